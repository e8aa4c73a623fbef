"""The Gunicorn side of the setup: the running master, its user, hook and pidfile, and the
refusals the reload itself would make."""

from __future__ import annotations

import contextlib
from typing import Any

import psutil

from .. import proc
from ..conf import app_settings
from ..config_snippets import HOOK_LINE, wsgi_app_spec
from ..exit_codes import CommandFailure
from .findings import Finding


def check_master() -> tuple[Finding, Any]:
    from ..gunicorn.finding import find_master
    from ..gunicorn.processes import process_owner

    try:
        master = find_master()
    except CommandFailure as exc:
        return (
            Finding(
                "Gunicorn master",
                False,
                exc.message,
                f"start Gunicorn from the checkout: gunicorn -c gunicorn.conf.py {wsgi_app_spec()} "
                '(or set ZERODEPLOY["GUNICORN_PIDFILE"] to its pidfile)',
            ),
            None,
        )
    owner = "unknown"
    if master.process() is not None:
        owner = process_owner(master.process())
    cmdline = proc.redact(" ".join(master.cmdline))
    detail = f"{master.describe()}, user {owner}, started as: {cmdline}"
    return Finding("Gunicorn master", True, detail), master


def check_user(master: Any, strategy: str, unit: str | None) -> Finding:
    """Can this user reload ``master`` with ``strategy`` (the one the reload would run)?
    Decided as the deploy decides it: directly, or through ``sudo -n`` (``sudo -n -l``)."""
    from ..gunicorn import privilege
    from ..gunicorn.master import reload_blocked
    from ..osutil import os_user

    failure = reload_blocked(master, strategy, unit)
    if failure is None:
        how = "through sudo -n" if privilege.needs_sudo(_uid(master.pid)) else "directly"
        return Finding("user", True, f"{os_user()} may reload it ({strategy}) {how}")
    first, _, line = failure.message.partition(":\n")
    return Finding("user", False, first, line.strip())


def _uid(pid: int) -> int | None:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).uids().effective
    return None


def check_hook(master: Any, config: Any) -> Finding:
    """Our post_worker_init runs in the live workers (they wrote the master's facts), or at
    least the configuration a restart would read loads it."""
    if master.facts is not None and master.facts.hooked:
        return Finding("Gunicorn hook", True, "the workers run django_zerodeploy's readiness hook")
    if config is not None and config.hooked:
        return Finding(
            "Gunicorn hook",
            False,
            "gunicorn.conf.py loads the hook, but the running workers have not reported "
            "through it (Gunicorn was started before, or uses another runtime directory)",
            "restart Gunicorn once (e.g. systemctl restart UNIT) so that it loads the hook",
            required=False,
        )
    return Finding(
        "Gunicorn hook",
        False,
        "Gunicorn does not load django_zerodeploy.gunicorn_conf: a new generation's readiness "
        "cannot be observed from its workers",
        f"{HOOK_LINE}  # in gunicorn.conf.py, then restart Gunicorn once",
        required=False,  # whether a reload works without it is the reload check's verdict
    )


def check_pidfile(master: Any) -> Finding:
    configured = app_settings.GUNICORN_PIDFILE
    if configured:
        return Finding("pidfile", True, f"GUNICORN_PIDFILE {configured} names master {master.pid}")
    if master.pidfile is not None:
        return Finding(
            "pidfile",
            False,
            f"GUNICORN_PIDFILE is not set; the master writes {master.pidfile}",
            f'ZERODEPLOY["GUNICORN_PIDFILE"] = "{master.pidfile}"',
            required=False,
        )
    return Finding(
        "pidfile",
        False,
        "Gunicorn writes no pidfile: the master is found by scanning processes",
        f'pidfile = "/run/{app_settings.repo_dir.name}/gunicorn.pid"  # in gunicorn.conf.py',
        required=False,
    )


def check_reload(master: Any, config: Any, decision: tuple | None) -> Finding:
    """The refusals the reload itself would make: ``decision`` is its own (``plan``)."""
    if decision is None:
        error = config.error if config is not None else "unknown"
        return Finding("reload", False, error, "fix gunicorn.conf.py until it loads")
    chosen, why, refused = decision
    if refused:
        return Finding("reload", False, f"strategy {chosen}: {refused[1]}")
    detail = f"strategy {chosen} would reload master {master.pid}"
    if why:
        detail += f" ({why})"
    if not config.hooked:
        detail += "; readiness observed from outside (no hook)"
    return Finding("reload", True, detail)
