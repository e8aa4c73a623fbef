"""Which strategy runs and whether it may: decided before any signal, also what ``deploy
--check`` reports. A usr2 that cannot work for this master falls back to a reload in place when
that can load the new code; what cannot work at all is refused with the reason and the fix."""

from __future__ import annotations

import contextlib

from ...exit_codes import FAILED, USAGE, CommandFailure
from .. import systemd
from ..master import reload_blocked
from ..probe import started_as_module
from .context import ReloadContext


def refusal(strategy: str, ctx: ReloadContext) -> tuple[int, str] | None:
    master, config = ctx.master, ctx.config
    if strategy in ("hup", "systemd") and (master.preload or config.preload):
        return FAILED, (
            f"Refusing a {strategy} reload: Gunicorn runs with preload_app, so HUP would fork new "
            "workers from the code already loaded in the master and keep serving the old "
            "release (Gunicorn #2449). Use --strategy usr2."
        )
    if strategy == "systemd" and not ctx.unit:
        return USAGE, (
            "The systemd strategy needs the unit: set ZERODEPLOY['GUNICORN_SYSTEMD_UNIT'] "
            "or pass --unit."
        )
    if strategy == "systemd":
        try:
            main = systemd.main_pid(ctx.unit or "")
        except CommandFailure as exc:
            return USAGE, exc.message
        if main != master.pid:
            return USAGE, (
                f"{ctx.unit} has MainPID {main}, not this project's Gunicorn master {master.pid}: "
                "`systemctl reload` would not reach it. Check GUNICORN_SYSTEMD_UNIT / --unit."
            )
    blocked = _privilege_refusal(strategy, ctx)
    if blocked:
        return USAGE, blocked
    if strategy == "usr2" and not _reexec_ok(ctx):
        return USAGE, (
            f"Gunicorn master {master.pid} was started with `python -m gunicorn` without "
            "django_zerodeploy's pre_exec hook: a USR2 re-exec would put gunicorn's package "
            "first on sys.path, the new master could not import Django (Gunicorn #3281). Restart "
            "it once with the django_zerodeploy.gunicorn_conf hooks, or start it with the "
            "`gunicorn` script."
        )
    if strategy == "usr2" and master.under_systemd:
        return _systemd_usr2_refusal(ctx)
    return None


def decide(strategy: str, ctx: ReloadContext) -> tuple[str, str, tuple[int, str] | None]:
    """(the strategy that will run, why it replaced the one asked for or '', the refusal or
    None): what a reload does before any signal, also what ``deploy --check`` reports."""
    switched = fallback(strategy, ctx)
    why = ""
    if switched:
        strategy, why = switched
    return strategy, why, refusal(strategy, ctx)


def fallback(strategy: str, ctx: ReloadContext) -> tuple[str, str] | None:
    """(strategy to run instead, why) when a USR2 cannot work for this master but a reload in
    place can: what ``systemctl reload`` (a HUP) would have done, behind the preflight. None
    when usr2 works, or when a HUP could not load new code either (preload_app: refused)."""
    if strategy != "usr2" or ctx.master.preload or ctx.config.preload:
        return None
    if not _reexec_ok(ctx):
        why = (
            "started with `python -m gunicorn` without django_zerodeploy's pre_exec hook, a "
            "USR2 re-exec could not import Django (Gunicorn #3281)"
        )
    elif ctx.master.under_systemd and _systemd_usr2_refusal(ctx) is not None:
        why = (
            "under systemd a USR2 gets the new master killed when the old MainPID exits "
            "(Gunicorn #2856) unless the hook announces it (Type=notify, NotifyAccess=all)"
        )
    else:
        return None
    chosen = "hup"
    if ctx.master.under_systemd and ctx.unit:
        with contextlib.suppress(CommandFailure):
            if systemd.main_pid(ctx.unit) == ctx.master.pid:
                chosen = "systemd"
    how = f"systemctl reload {ctx.unit}" if chosen == "systemd" else "HUP to the master"
    return (
        chosen,
        f"usr2 -> {chosen}: master {ctx.master.pid} was {why}; reloading in place ({how})",
    )


def _privilege_refusal(strategy: str, ctx: ReloadContext) -> str:
    """A master of another user: its workers must report here, and sudoers must allow the
    exact command (see ``privilege``); '' when nothing stands in the way."""
    failure = reload_blocked(ctx.master, strategy, ctx.unit, hooked=ctx.config.hooked)
    return failure.message if failure else ""


def _reexec_ok(ctx: ReloadContext) -> bool:
    """The running master's own fact if its workers reported it, else its command line and the
    configuration file."""
    if ctx.master.facts is not None:
        return ctx.master.facts.reexec_ok
    return not started_as_module(ctx.master.cmdline) or ctx.config.pre_exec_hooked


def _systemd_usr2_refusal(ctx: ReloadContext) -> tuple[int, str] | None:
    """Under systemd a bare USR2 gets the new master killed when the old one exits (Gunicorn
    #2856); only allowed when the hook can announce the new MAINPID and systemd will take it."""
    master = ctx.master
    advice = (
        " Use --strategy systemd, or run the unit with Type=notify and NotifyAccess=all "
        "and the django_zerodeploy.gunicorn_conf hooks (see docs/reload.md)."
    )
    base = f"Gunicorn master {master.pid} runs under systemd: a plain USR2 would get the new master killed when the old one exits (Gunicorn #2856)."
    if not ctx.config.hooked:
        return USAGE, base + " Gunicorn runs without the hook that announces it." + advice
    if not master.environ.get("NOTIFY_SOCKET"):
        return (
            USAGE,
            base + " The unit is not Type=notify, so the new MAINPID cannot be announced." + advice,
        )
    if not ctx.unit:
        return USAGE, base + " The unit is unknown, so NotifyAccess=all cannot be checked." + advice
    try:
        access = systemd.notify_access(ctx.unit)
    except CommandFailure as exc:
        return USAGE, base + f" {exc.message}" + advice
    if access != "all":
        return USAGE, base + f" {ctx.unit} has NotifyAccess={access or 'none'}, not all." + advice
    return None
