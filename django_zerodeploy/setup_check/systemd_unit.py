"""The systemd unit Gunicorn runs under, read through ``systemctl show``: what its
properties mean for a reload."""

from __future__ import annotations

from typing import Any

from ..conf import app_settings
from ..exit_codes import CommandFailure
from .findings import Finding
from .runtime_dirs import runtime_fix

UNIT_PROPERTIES = ("Type", "ExecReload", "KillMode", "NotifyAccess", "PrivateTmp", "User")


def unit_name(master: Any) -> str | None:
    from ..gunicorn import systemd

    unit = app_settings.GUNICORN_SYSTEMD_UNIT
    if not unit and master is not None and master.under_systemd:
        unit = systemd.unit_of(master.pid)
    return unit


def check_unit(unit: str | None) -> list[Finding]:
    from ..gunicorn import systemd

    if not unit:
        return [Finding("systemd unit", True, "Gunicorn does not run under systemd")]
    try:
        props = systemd.properties(unit, UNIT_PROPERTIES)
    except CommandFailure as exc:
        return [
            Finding("systemd unit", False, exc.message, "set GUNICORN_SYSTEMD_UNIT to the unit")
        ]
    return evaluate_unit(unit, props, app_settings.RELOAD_STRATEGY, bool(app_settings.RUNTIME_DIR))


def evaluate_unit(
    unit: str, props: dict[str, str], strategy: str, runtime_configured: bool
) -> list[Finding]:
    """What the unit's properties (as ``systemctl show`` prints them) mean for a deploy."""
    shown = ", ".join(f"{k}={props.get(k, '')}" for k in UNIT_PROPERTIES)
    found = [Finding("systemd unit", True, f"{unit}: {shown}"), *_notify_findings(props, strategy)]
    reload_line = props.get("ExecReload", "")
    hup = "HUP" in reload_line and "MAINPID" in reload_line
    found.append(
        Finding(
            "unit ExecReload",
            hup or strategy != "systemd",
            ("a HUP to $MAINPID" if hup else (reload_line or "none"))
            + ": `systemctl reload` sends a bare HUP; deploy and reload_gunicorn gate it",
            "ExecReload=/bin/kill -s HUP $MAINPID  # in [Service]",
        )
    )
    kill_mode = props.get("KillMode", "")
    found.append(
        Finding(
            "unit KillMode",
            kill_mode in ("mixed", "control-group"),
            kill_mode or "unknown",
            "KillMode=mixed  # in [Service]: stop sends TERM to the master, then cleans up",
            required=False,
        )
    )
    private = props.get("PrivateTmp", "") in ("yes", "true", "1")
    found.append(
        Finding(
            "unit PrivateTmp",
            not private or runtime_configured,
            "yes: Gunicorn has its own /tmp" if private else "no",
            runtime_fix(),
        )
    )
    found.append(Finding("unit User", True, props.get("User") or "root (no User=)"))
    return found


def _notify_findings(props: dict[str, str], strategy: str) -> list[Finding]:
    """Type= and NotifyAccess=: what a USR2 under systemd needs to hand MAINPID over."""
    usr2 = strategy == "usr2"
    found = []
    kind = props.get("Type", "")
    found.append(
        Finding("unit Type", True, "notify: systemd can be told the new master after a USR2")
        if kind == "notify"
        else Finding(
            "unit Type",
            not usr2,
            f"{kind or 'unknown'}: a USR2 under systemd needs Type=notify (Gunicorn #2856)",
            "Type=notify  # in [Service]",
            required=False,  # the reload check says whether the strategy still works
        )
    )
    notify = props.get("NotifyAccess", "")
    found.append(
        Finding(
            "unit NotifyAccess",
            notify == "all" or not usr2,
            f"{notify or 'none'}"
            + ("" if notify == "all" else ": the new master's workers cannot notify systemd"),
            "NotifyAccess=all  # in [Service]",
            required=False,
        )
    )
    return found
