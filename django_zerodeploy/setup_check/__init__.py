"""``deploy --check``: is this host set up so that a deploy would work?

It looks at the real setup, never at what the documentation assumes: the running Gunicorn
master (its command line and user), whether our hook runs in it, the middleware, the URL
include, ``HEALTHZ_URL``, the pidfile, the runtime directory as each process of the site sees
it, and the systemd unit (through ``systemctl show``). Each piece is a ``Finding``: in place, or
missing with the one line that adds it. Nothing is signalled and nothing is changed.

The findings (findings.py) come from the Django side (django_side.py), the running Gunicorn
(gunicorn_side.py), the runtime directory of each process (runtime_dirs.py) and the systemd
unit (systemd_unit.py); check_setup() below asks them in the order an operator sets up.
"""

from __future__ import annotations

from ..conf import app_settings
from .django_side import check_checkout, check_healthz_url, check_middleware, check_urls
from .findings import SetupReport
from .gunicorn_side import check_hook, check_master, check_pidfile, check_reload, check_user
from .runtime_dirs import check_runtime_dir
from .systemd_unit import check_unit, unit_name


def check_setup() -> SetupReport:
    """Every check, in the order an operator sets things up."""
    from ..gunicorn.reloader import read_config, reload_plan

    report = SetupReport([check_checkout(), check_middleware(), check_urls()])
    master_finding, master = check_master()
    report.findings.append(master_finding)
    report.findings.append(check_healthz_url(master))
    if master is None:
        return report
    config = read_config(master, timeout=60)
    unit = unit_name(master)
    decision = reload_plan(master, config) if config.ok else None  # as the reload decides it
    strategy = decision[0] if decision else app_settings.RELOAD_STRATEGY
    report.findings += [
        check_user(master, strategy, unit),
        check_hook(master, config if config.ok else None),
        check_pidfile(master),
        check_runtime_dir(master),
        *check_unit(unit),
    ]
    report.findings.append(check_reload(master, config, decision))
    return report
