"""The three ways to load new code into a running Gunicorn, each with its own checks.

``usr2``: a new master next to the old one; the old one is retired only once every worker of
the new generation is ready, and a new generation that fails is stopped while the old one
keeps serving. ``hup`` and ``systemd`` (``systemctl reload``, whose ExecReload sends HUP) reload
in place: Gunicorn stops the old workers as soon as the new ones are forked, so they depend on
the preflight, and the verification can only tell whether the site came back.

"Ready" is what the workers of a Gunicorn running our hook report (URLconf and smoke URLs
passed, and the release each runs). Without the hook it is observed from outside: the worker
entered Gunicorn's request loop (``heartbeat``), after the preflight passed; the release that
serves is then read from ``HEALTHZ_URL`` once only the new workers remain.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from .. import healthz_url, readiness
from .. import proc as proc_mod
from ..conf import app_settings
from ..exit_codes import DOWN, FAILED, OK, USAGE, CommandFailure
from ..osutil import last_lines
from . import heartbeat, privilege, systemd
from . import result as phases
from .master import Master, build_master, child_masters, read_pidfile, reload_blocked
from .probe import GunicornConfig, started_as_module
from .result import Recorder, ReloadResult

# Between looks at a booting generation: each look costs ~2 ms of CPU, and a coarser interval
# adds up to itself to every wait of a reload (new master, workers ready, promotion).
POLL = 0.025
RETIRE_MARGIN = 15.0  # beyond graceful_timeout, for a master to finish exiting
REAP_WAIT = 5.0  # for an old master to reap a leftover it had made (its loop wakes every 1 s)
PROMOTION_WAIT = 15.0  # the new master checks its parent about once a second
ANNOUNCE_WAIT = 10.0
VERIFY_WAIT = 15.0  # hookless: for HEALTHZ_URL to report the new release
HOOKLESS_NOTE = (
    "Gunicorn runs without django_zerodeploy's hook: new workers count as ready once they "
    "enter Gunicorn's request loop, gated by the preflight. The hook adds a URLconf and smoke "
    "check in every worker, the release each one runs, and USR2 under systemd: add "
    "`from django_zerodeploy.gunicorn_conf import *` to gunicorn.conf.py (docs/reload.md)."
)


@dataclass
class Context:
    """Everything a strategy needs, decided before any signal."""

    master: Master
    config: GunicornConfig  # the checked-out configuration: what the next generation uses
    timeout: float
    expected_release: str  # the release the checkout holds ('' when unknown)
    unit: str | None
    recorder: Recorder
    strategy: str = ""
    hooked: bool = True  # the next generation runs our readiness hook (config.hooked)

    def result(self, ok: bool, code: int, message: str, **extra: object) -> ReloadResult:
        result = ReloadResult(
            ok=ok,
            exit_code=code,
            strategy=self.strategy,
            message=message,
            old_master_pid=self.master.pid,
            phases=self.recorder.phases,
            hooked=self.hooked,
        )
        for key, value in extra.items():
            setattr(result, key, value)
        return result


@dataclass
class Generation:
    """Workers of one master, as their reports show them."""

    master_alive: bool
    expected: int
    ready: list[readiness.WorkerReport]
    live: set[int]
    refusals: list[readiness.WorkerReport]

    @property
    def complete(self) -> bool:
        ready = {r.pid for r in self.ready}
        return self.master_alive and len(ready) >= self.expected and self.live <= ready

    @property
    def releases(self) -> set[str]:
        return {r.release for r in self.ready}

    def count(self) -> str:
        return f"{len(self.ready)}/{self.expected}"


def observe(
    master: Master,
    expected: int,
    since: float,
    exclude: set[int] = frozenset(),  # type: ignore[assignment]
    hooked: bool = True,
) -> Generation:
    """The generation of ``master`` started after ``since`` (workers in ``exclude`` are the old
    ones, for an in-place reload). Without the hook a worker is ready once it entered the
    request loop; its release is unknown ('')."""
    alive = master.alive()
    live = master.worker_pids() - exclude if alive else set()
    if hooked:
        ready = [
            r for r in readiness.reports_for_master(master.pid) if r.ready and r.pid not in exclude
        ]
    else:
        ready = [
            readiness.WorkerReport(pid, master.pid, "", time.time(), True, "request loop")
            for pid in sorted(live)
            if heartbeat.in_request_loop(pid)
        ]
    refusals = [r for r in readiness.refusals_for_master(master.pid) if r.booted_at >= since]
    return Generation(alive, expected, ready, live, refusals)


def serving(master: Master) -> bool:
    """``master`` is alive and has a worker that serves: one that reported ready, or (without
    the hook) one in Gunicorn's request loop."""
    if not master.alive():
        return False
    if any(r.ready for r in readiness.reports_for_master(master.pid)):
        return True
    return any(heartbeat.in_request_loop(pid) for pid in master.worker_pids())


def _short(releases: set[str]) -> str:
    return ", ".join(sorted(r[:12] or "unknown" for r in releases)) or "none"


def _mixed(gen: Generation) -> str:
    """Why a new generation whose ready workers report several releases is not verified (''
    when they agree), even when one of them is the checkout's: which one answers is luck."""
    if len(gen.releases) < 2:
        return ""
    return (
        f"the new workers report {len(gen.releases)} different releases "
        f"({_short(gen.releases)}), so which one serves a request would be luck"
    )


def log_tail(master: Master, config: GunicornConfig, lines: int = 12) -> str:
    """The end of Gunicorn's error log, to show why a generation failed."""
    path = (master.facts.errorlog if master.facts else None) or config.errorlog
    if not path:
        return ""
    return proc_mod.redact(last_lines(path, lines))


def wait_until(predicate: Callable[[], object], seconds: float) -> object:
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(POLL)


def stop_master(master: Master, grace: float) -> str:
    """TERM a master (graceful), then KILL it and its workers if it will not go."""
    proc = master.process()
    if proc is None:
        return f"master {master.pid} had already exited"
    workers = master.workers()
    master.signal(signal.SIGTERM)
    if master.wait_gone(grace + RETIRE_MARGIN):
        return f"master {master.pid} stopped (TERM)"
    for p in [proc, *workers]:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs([proc, *workers], timeout=5)
    return f"master {master.pid} killed after {grace + RETIRE_MARGIN:g} s"


# -- refusals, decided before any signal ---------------------------------------------------------
def refusal(strategy: str, ctx: Context) -> tuple[int, str] | None:
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


def decide(strategy: str, ctx: Context) -> tuple[str, str, tuple[int, str] | None]:
    """(the strategy that will run, why it replaced the one asked for or '', the refusal or
    None): what a reload does before any signal, also what ``deploy --check`` reports."""
    switched = fallback(strategy, ctx)
    why = ""
    if switched:
        strategy, why = switched
    return strategy, why, refusal(strategy, ctx)


def fallback(strategy: str, ctx: Context) -> tuple[str, str] | None:
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


def _privilege_refusal(strategy: str, ctx: Context) -> str:
    """A master of another user: its workers must report here, and sudoers must allow the
    exact command (see ``privilege``); '' when nothing stands in the way."""
    failure = reload_blocked(ctx.master, strategy, ctx.unit, hooked=ctx.config.hooked)
    return failure.message if failure else ""


def _reexec_ok(ctx: Context) -> bool:
    """The running master's own fact if its workers reported it, else its command line and the
    configuration file."""
    if ctx.master.facts is not None:
        return ctx.master.facts.reexec_ok
    return not started_as_module(ctx.master.cmdline) or ctx.config.pre_exec_hooked


def _systemd_usr2_refusal(ctx: Context) -> tuple[int, str] | None:
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


# -- usr2 ---------------------------------------------------------------------------------------
def _pidfile2(master: Master) -> Path | None:
    return Path(f"{master.pidfile}.2") if master.pidfile else None


def _cleanup(old: Master, pidfile2: Path | None) -> list[str]:
    """Leftovers of an interrupted reload: a new master never promoted, a stale .2 pidfile."""
    done = []
    proc = old.process()
    leftovers = child_masters(proc) if proc else []
    for child in leftovers:
        stale = build_master(child, pidfile2)
        done.append("leftover new " + stop_master(stale, old.graceful_timeout))
        if not wait_until(lambda pid=child.pid: _reaped(pid, old.pid), REAP_WAIT):
            done.append(f"master {old.pid} has not reaped pid {child.pid} yet")
    if pidfile2 and pidfile2.exists():
        pid, _ = read_pidfile(pidfile2)
        still = (
            pid is not None and proc is not None and any(c.pid == pid for c in child_masters(proc))
        )
        if not still:
            with contextlib.suppress(OSError):
                pidfile2.unlink()
            done.append(f"removed stale {pidfile2}")
    return done


def _reaped(pid: int, parent: int) -> bool:
    """Gone from the process table, not merely exited: Gunicorn ignores a USR2 while the child
    of its previous one is unreaped ("USR2 signal ignored. Child exists.", arbiter.reexec), and
    it reaps only when its main loop handles the SIGCHLD, after our wait saw the exit."""
    try:
        return psutil.Process(pid).ppid() != parent  # the pid is another process's now
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _new_master(old: Master, pidfile2: Path | None) -> Master | None:
    proc = old.process()
    if proc is None:
        return None
    children = child_masters(proc)
    if not children:
        return None
    chosen = children[0]
    if pidfile2:
        pid, _ = read_pidfile(pidfile2)
        chosen = next((c for c in children if c.pid == pid), chosen)
    with contextlib.suppress(psutil.Error):
        return build_master(chosen, old.pidfile)
    return None


def _clean_pidfile2(pidfile2: Path | None, pid: int | None) -> None:
    if pidfile2 and pidfile2.exists():
        held, _ = read_pidfile(pidfile2)
        if held is None or held == pid or not psutil.pid_exists(held):
            with contextlib.suppress(OSError):
                pidfile2.unlink()


def _refusal_text(refusals: list[readiness.WorkerReport]) -> str:
    if not refusals:
        return ""
    first = refusals[0]
    return f"worker {first.pid} refused to boot: {first.detail}"


def _abort(ctx: Context, new: Master, pidfile2: Path | None, why: str) -> ReloadResult:
    old = ctx.master
    refusals = readiness.refusals_for_master(new.pid)
    reason = _refusal_text(refusals) or why
    stopped = stop_master(new, new.graceful_timeout if new.facts else old.graceful_timeout)
    _clean_pidfile2(pidfile2, new.pid)
    ctx.recorder.phase(phases.ABORTED, f"new {stopped}; {reason}")
    output = log_tail(old, ctx.config)
    readiness.forget_master(new.pid)
    if serving(old):
        return ctx.result(
            False,
            FAILED,
            f"Reload aborted, the old release still serves (master {old.pid}): {reason}.",
            new_master_pid=new.pid,
            output=output,
        )
    return ctx.result(
        False,
        DOWN,
        f"Reload aborted and the old master {old.pid} is not serving: the site may be down. {reason}.",
        new_master_pid=new.pid,
        output=output,
    )


def run_usr2(ctx: Context) -> ReloadResult:
    old, rec = ctx.master, ctx.recorder
    pidfile2 = _pidfile2(old)
    cleaned = _cleanup(old, pidfile2)
    if cleaned:
        rec.phase(phases.CLEANUP, "; ".join(cleaned))
    since = time.time()
    old.signal(signal.SIGUSR2)
    rec.phase(phases.SIGNAL, f"USR2 sent to master {old.pid}")
    deadline = time.monotonic() + ctx.timeout

    new = None
    while new is None:
        new = _new_master(old, pidfile2)
        if new is None and (time.monotonic() > deadline or not old.alive()):
            _clean_pidfile2(pidfile2, None)
            if not old.alive():
                return ctx.result(
                    False,
                    DOWN,
                    f"The old master {old.pid} exited after USR2 and no new one started: the site is down.",
                    output=log_tail(old, ctx.config),
                )
            return ctx.result(
                False,
                FAILED,
                f"No new master started within {ctx.timeout:g} s of USR2 (see Gunicorn's log); the old release still serves.",
                output=log_tail(old, ctx.config),
            )
        if new is None:
            time.sleep(POLL)
    rec.phase(phases.NEW_MASTER, f"pid {new.pid}")

    while True:
        gen = observe(new, ctx.config.workers, since, hooked=ctx.hooked)
        if gen.complete:
            break
        if gen.refusals:
            return _abort(ctx, new, pidfile2, "the new generation refused to boot")
        if not gen.master_alive:
            return _abort(
                ctx, new, pidfile2, f"the new master {new.pid} exited before its workers were ready"
            )
        if time.monotonic() > deadline:
            return _abort(
                ctx,
                new,
                pidfile2,
                f"only {gen.count()} new workers were ready after {ctx.timeout:g} s",
            )
        time.sleep(POLL)
    rec.phase(
        phases.NEW_GENERATION_READY,
        f"{gen.count()} workers of master {new.pid} on release {_short(gen.releases)}",
    )
    mixed = _mixed(gen)
    if mixed:
        return _abort(ctx, new, pidfile2, mixed)
    if ctx.hooked and ctx.expected_release and gen.releases != {ctx.expected_release}:
        return _abort(
            ctx,
            new,
            pidfile2,
            f"the new workers run release {_short(gen.releases)}, but the checkout is at {ctx.expected_release[:12]}",
        )

    if old.under_systemd:
        message = wait_until(lambda: readiness.announced(new.pid), ANNOUNCE_WAIT)
        if not message:
            return _abort(
                ctx,
                new,
                pidfile2,
                "the new master was not announced to systemd as MAINPID (is NOTIFY_SOCKET reachable?)",
            )
        rec.phase(phases.SYSTEMD, f"MAINPID={new.pid} announced")

    retired = _retire(old)
    rec.phase(phases.OLD_RETIRED, retired)
    if not new.alive():
        return ctx.result(
            False,
            DOWN,
            f"The new master {new.pid} exited after the old one was retired: the site is down.",
            new_master_pid=new.pid,
            output=log_tail(new, ctx.config),
        )
    if _await_promotion(old, new, pidfile2):
        rec.phase(
            phases.PROMOTED, f"master {new.pid}" + (f" now in {new.pidfile}" if new.pidfile else "")
        )
    else:
        rec.phase(phases.PROMOTED, f"master {new.pid} has not rewritten its pidfile yet")
    if old.alive():
        note = f"; the old master {old.pid} is still draining requests"
    else:
        note = ""
        readiness.forget_master(old.pid)
    return _reloaded(ctx, new, gen, note)


def _await_promotion(old: Master, new: Master, pidfile2: Path | None) -> bool:
    """Wait for the new master to take over (its parent gone, ``pidfile.2`` renamed to the
    pidfile). Gunicorn's arbiter looks at its parent only when its main loop turns, which an
    idle one does once a second; a SIGCHLD turns it at once (its handler reaps exited
    children, of which there are none, and wakes the loop), so the master the old one leaves
    is promoted now, not up to a second later. Skipped for a master of another user: the
    sudoers line allows only the reload's own signals."""

    def promoted() -> bool:
        if new.ppid() == old.pid or not new.alive():
            return False
        if new.pidfile:
            pid, _ = read_pidfile(new.pidfile)
            return pid == new.pid and not (pidfile2 and pidfile2.exists())
        return True

    if not old.alive() and not privilege.needs_sudo(new.uid):
        with contextlib.suppress(CommandFailure):
            new.signal(signal.SIGCHLD)
    return bool(wait_until(promoted, PROMOTION_WAIT))


def _reloaded(ctx: Context, master: Master, gen: Generation, note: str = "") -> ReloadResult:
    """The success result: ``master`` serves the one release its ready generation reports."""
    (release,) = gen.releases  # one release: _mixed() refused several
    if not ctx.hooked:
        return _verified_from_outside(ctx, master, gen, note)
    return ctx.result(
        True,
        OK,
        f"Reloaded: master {master.pid} serves release {release[:12] or 'unknown'} "
        f"with {gen.count()} workers ready{note}.",
        new_master_pid=master.pid,
        release=release,
        workers_ready=len(gen.ready),
        workers_expected=gen.expected,
    )


def _verified_from_outside(
    ctx: Context, master: Master, gen: Generation, note: str
) -> ReloadResult:
    """Without the hook, the workers do not say which release they run: only new workers remain
    now, so HEALTHZ_URL answers for them. Without HEALTHZ_URL the release is not verified."""
    done = dict(
        new_master_pid=master.pid, workers_ready=len(gen.ready), workers_expected=gen.expected
    )
    url = app_settings.HEALTHZ_URL
    if not url:
        ctx.recorder.phase(phases.VERIFY, "not verified: no hook and no HEALTHZ_URL")
        return ctx.result(
            True,
            OK,
            f"Reloaded: master {master.pid} serves with {gen.count()} workers in their request "
            f"loop{note}; the release is not verified (set HEALTHZ_URL, or add the hook).",
            **done,
        )
    expected = ctx.expected_release

    def new_release() -> str | None:
        release = healthz_url.release_id(url)
        return release if release and (not expected or release == expected) else None

    seen = wait_until(new_release, VERIFY_WAIT)
    if not seen:
        got = healthz_url.release_id(url)
        ctx.recorder.phase(phases.VERIFY, f"{url} reports releaseId {got!r}")
        return ctx.result(
            False,
            FAILED,
            f"The reloaded workers of master {master.pid} report release {(got or 'none')[:12]} "
            f"at {url}, not the checkout's {expected[:12]} (a symlinked release directory? "
            "Gunicorn #394).",
            release=got,
            **done,
        )
    ctx.recorder.phase(phases.VERIFY, f"{url} reports releaseId {seen}")
    return ctx.result(
        True,
        OK,
        f"Reloaded: master {master.pid} serves release {str(seen)[:12]} with {gen.count()} "
        f"workers in their request loop{note}.",
        release=seen,
        **done,
    )


def _retire(old: Master) -> str:
    """Stop the old generation gracefully: WINCH first when daemonized (it stops the workers and
    keeps the master; ignored in the foreground), then TERM."""
    steps = []
    grace = old.graceful_timeout + RETIRE_MARGIN
    if old.daemon and old.alive():
        old.signal(signal.SIGWINCH)
        gone = wait_until(lambda: not old.workers(), grace)
        steps.append("WINCH: old workers " + ("stopped" if gone else "still draining"))
    if old.alive():
        old.signal(signal.SIGTERM)
        gone = old.wait_gone(grace)
        steps.append(f"TERM: master {old.pid} " + ("exited" if gone else "still draining"))
    else:
        steps.append(f"master {old.pid} had already exited")
    return "; ".join(steps)


# -- hup and systemd: reload in place ------------------------------------------------------------
def _in_place(ctx: Context, send: Callable[[], str]) -> ReloadResult:
    master, rec = ctx.master, ctx.recorder
    old_workers = master.worker_pids()
    since = time.time()
    rec.phase(phases.SIGNAL, send())
    deadline = time.monotonic() + ctx.timeout
    while True:
        gen = observe(master, ctx.config.workers, since, old_workers, ctx.hooked)
        if not gen.master_alive:
            reason = _refusal_text(gen.refusals) or "see Gunicorn's log"
            return ctx.result(
                False,
                DOWN,
                f"The Gunicorn master {master.pid} exited during the reload: the site is down ({reason}).",
                output=log_tail(master, ctx.config),
            )
        if gen.complete:
            break
        if time.monotonic() > deadline:
            reason = _refusal_text(gen.refusals)
            code = FAILED if serving(master) and not gen.ready else DOWN
            return ctx.result(
                False,
                code,
                f"Only {gen.count()} new workers were ready {ctx.timeout:g} s after the reload"
                + (f" ({reason})" if reason else "")
                + ".",
                output=log_tail(master, ctx.config),
            )
        time.sleep(POLL)
    rec.phase(
        phases.NEW_GENERATION_READY,
        f"{gen.count()} workers of master {master.pid} on release {_short(gen.releases)}",
    )
    mixed = _mixed(gen)
    if mixed:
        # in place, the old workers are on their way out: nothing to fall back to
        return ctx.result(
            False,
            DOWN,
            f"Reload not verified: {mixed}. Master {master.pid} now serves this mix: check "
            "the checkout and reload again.",
            workers_ready=len(gen.ready),
            workers_expected=gen.expected,
        )
    if ctx.hooked and ctx.expected_release and gen.releases != {ctx.expected_release}:
        (release,) = gen.releases
        return ctx.result(
            False,
            FAILED,
            f"The reloaded workers run release {_short(gen.releases)}, not the checkout's {ctx.expected_release[:12]} (a symlinked release directory? Gunicorn #394): the old release still serves.",
            release=release,
            workers_ready=len(gen.ready),
            workers_expected=gen.expected,
        )

    def old_gone() -> bool:
        return not (master.worker_pids() & old_workers)

    gone = wait_until(old_gone, master.graceful_timeout + RETIRE_MARGIN)
    rec.phase(
        phases.OLD_RETIRED,
        f"{len(old_workers)} old workers " + ("exited" if gone else "still draining"),
    )
    if not master.alive():
        return ctx.result(
            False,
            DOWN,
            f"The Gunicorn master {master.pid} exited after the reload: the site is down.",
            output=log_tail(master, ctx.config),
        )
    return _reloaded(ctx, master, gen)


def run_hup(ctx: Context) -> ReloadResult:
    def send() -> str:
        ctx.master.signal(signal.SIGHUP)
        return f"HUP sent to master {ctx.master.pid}"

    return _in_place(ctx, send)


def run_systemd(ctx: Context) -> ReloadResult:
    unit = ctx.unit or ""

    def send() -> str:
        ran = systemd.reload_unit(unit, timeout=ctx.timeout)
        ctx.master.signalled = True  # ExecReload may have sent HUP even if systemctl failed
        if not ran.ok:
            raise CommandFailure(
                f"`systemctl reload {unit}` failed: {ran.last_lines(3) or ran.returncode}.", FAILED
            )
        return f"systemctl reload {unit}"

    before = ctx.master.worker_pids()
    try:
        result = _in_place(ctx, send)
    except CommandFailure as exc:
        if ctx.master.alive() and ctx.master.worker_pids() == before:
            return ctx.result(
                False, FAILED, exc.message + " Nothing changed: the old release still serves."
            )
        return ctx.result(False, DOWN, exc.message + " The workers changed anyway: check the site.")
    if result.ok:
        try:
            main = systemd.main_pid(unit)
        except CommandFailure as exc:
            # the new generation is verified and serves; only systemd's view is unconfirmed
            ctx.recorder.phase(phases.SYSTEMD, f"MainPID not confirmed: {exc.message}")
            result.message += (
                f" MainPID of {unit} could not be confirmed ({exc.message}): "
                f"check `systemctl status {unit}`."
            )
            return result
        if main != ctx.master.pid:
            result.ok, result.exit_code = False, DOWN
            result.message = f"After `systemctl reload {unit}` MainPID is {main}, not the master {ctx.master.pid}: check the unit."
    return result


RUNNERS: dict[str, Callable[[Context], ReloadResult]] = {
    "usr2": run_usr2,
    "hup": run_hup,
    "systemd": run_systemd,
}
