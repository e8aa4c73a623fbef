"""What the systemd unit's properties, as ``systemctl show`` prints them, mean for a deploy:
each missing line is named with the line that adds it."""

from __future__ import annotations

from django_zerodeploy.gunicorn.systemd import parse_show
from django_zerodeploy.setup_check.systemd_unit import evaluate_unit

# The property values as `systemctl show` prints them, for every branch of evaluate_unit;
# tests/deploy/test_systemd_real.py runs `deploy --check` against real units under a real systemd.
DOCS_UNIT = """\
Type=simple
ExecReload={ path=/bin/kill ; argv[]=/bin/kill -s HUP $MAINPID ; ignore_errors=no }
KillMode=control-group
NotifyAccess=none
PrivateTmp=yes
User=www-data
"""


def test_unit_properties_name_each_missing_line() -> None:
    props = parse_show(DOCS_UNIT)
    found = {f.name: f for f in evaluate_unit("gunicorn.service", props, "usr2", False)}
    assert not found["unit Type"].ok and found["unit Type"].fix.startswith("Type=notify")
    assert not found["unit NotifyAccess"].ok
    assert found["unit NotifyAccess"].fix.startswith("NotifyAccess=all")
    assert not found["unit PrivateTmp"].ok and "RUNTIME_DIR" in found["unit PrivateTmp"].fix
    assert found["unit ExecReload"].ok and found["unit KillMode"].ok
    assert found["unit User"].detail == "www-data"

    ours = parse_show(DOCS_UNIT.replace("Type=simple", "Type=notify").replace("=none", "=all"))
    good = evaluate_unit("gunicorn.service", ours, "usr2", runtime_configured=True)
    assert all(f.ok for f in good), good
    # the systemd strategy runs ExecReload: it must be a HUP to the master
    no_reload = dict(ours, ExecReload="")
    by_name = {f.name: f for f in evaluate_unit("g.service", no_reload, "systemd", True)}
    assert not by_name["unit ExecReload"].ok
