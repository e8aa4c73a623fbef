"""usr2: a new master next to the old one, the old one retired only once every worker of the
new generation is ready; a new generation that fails is stopped while the old one keeps serving.

``run_usr2`` reads like Gunicorn's ``Arbiter.run``: one short function per phase, each recording
its phase (``result``'s constants) and returning the answer when the reload stops there."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ...exit_codes import DOWN, FAILED, CommandFailure
from .. import privilege, readiness
from .. import result as phases
from ..finding import read_pidfile
from ..master import Master, build_master
from ..processes import child_masters
from ..result import ReloadResult
from .context import ANNOUNCE_WAIT, POLL, PROMOTION_WAIT, ReloadContext, log_tail, wait_until
from .generation import (
    MASTER_EXITED,
    REFUSED_TO_BOOT,
    Generation,
    await_generation,
    check_generation,
    refusal_text,
    reloaded,
    serving,
)
from .stopping import clean_pidfile2, clean_up, pidfile2, retire, stop_master


@dataclass
class _Usr2:
    """One usr2 reload as it goes: what each phase found, for the next one."""

    ctx: ReloadContext
    pidfile2: Path | None
    since: float = 0.0  # when USR2 was sent (refusals before it are an earlier generation's)
    deadline: float = 0.0  # for the new master and its generation: --timeout after USR2
    new: Master = field(init=False)
    gen: Generation = field(init=False)


def run_usr2(ctx: ReloadContext) -> ReloadResult:
    """Clean up, USR2, then each phase until one stops the reload; the last one answers."""
    run = _Usr2(ctx, pidfile2(ctx.master))
    _clean_up(run)
    _send_usr2(run)
    steps: tuple[Callable[[_Usr2], ReloadResult | None], ...] = (
        _await_new_master,
        _await_new_generation,
        _announce_to_systemd,
        _retire_old,
    )
    for step in steps:
        stopped = step(run)
        if stopped is not None:
            return stopped
    return _promote(run)


def _clean_up(run: _Usr2) -> None:
    cleaned = clean_up(run.ctx.master, run.pidfile2)
    if cleaned:
        run.ctx.recorder.phase(phases.CLEANUP, "; ".join(cleaned))


def _send_usr2(run: _Usr2) -> None:
    old = run.ctx.master
    run.since = time.time()
    old.signal(signal.SIGUSR2)
    run.ctx.recorder.phase(phases.SIGNAL, f"USR2 sent to master {old.pid}")
    run.deadline = time.monotonic() + run.ctx.timeout


def _await_new_master(run: _Usr2) -> ReloadResult | None:
    ctx, old = run.ctx, run.ctx.master
    while True:
        new = _new_master(old, run.pidfile2)
        if new is not None:
            break
        if time.monotonic() > run.deadline or not old.alive():
            clean_pidfile2(run.pidfile2, None)
            return _no_new_master(ctx)
        time.sleep(POLL)
    run.new = new
    ctx.recorder.phase(phases.NEW_MASTER, f"pid {new.pid}")
    return None


def _no_new_master(ctx: ReloadContext) -> ReloadResult:
    old = ctx.master
    if not old.alive():
        return ctx.failure(
            DOWN,
            f"The old master {old.pid} exited after USR2 and no new one started: the site is down.",
            log_of=old,
        )
    return ctx.failure(
        FAILED,
        f"No new master started within {ctx.timeout:g} s of USR2 (see Gunicorn's log); the old release still serves.",
        log_of=old,
    )


def _await_new_generation(run: _Usr2) -> ReloadResult | None:
    ctx, new = run.ctx, run.new
    gen, stopped = await_generation(ctx, new, run.since, run.deadline, stop_on_refusal=True)
    if stopped == REFUSED_TO_BOOT:
        return _abort(ctx, new, run.pidfile2, "the new generation refused to boot")
    if stopped == MASTER_EXITED:
        why = f"the new master {new.pid} exited before its workers were ready"
        return _abort(ctx, new, run.pidfile2, why)
    if stopped:
        why = f"only {gen.count()} new workers were ready after {ctx.timeout:g} s"
        return _abort(ctx, new, run.pidfile2, why)
    unverified = check_generation(ctx, new, gen)
    if unverified is not None:
        return _abort(ctx, new, run.pidfile2, unverified.why)
    run.gen = gen
    return None


def _announce_to_systemd(run: _Usr2) -> ReloadResult | None:
    """Under systemd, the new master must be MAINPID before the old one exits (Gunicorn #2856)."""
    new = run.new
    if not run.ctx.master.under_systemd:
        return None
    if not wait_until(lambda: readiness.announced(new.pid), ANNOUNCE_WAIT):
        return _abort(
            run.ctx,
            new,
            run.pidfile2,
            "the new master was not announced to systemd as MAINPID (is NOTIFY_SOCKET reachable?)",
        )
    run.ctx.recorder.phase(phases.SYSTEMD, f"MAINPID={new.pid} announced")
    return None


def _retire_old(run: _Usr2) -> ReloadResult | None:
    ctx, new = run.ctx, run.new
    ctx.recorder.phase(phases.OLD_RETIRED, retire(ctx.master))
    if new.alive():
        return None
    return ctx.failure(
        DOWN,
        f"The new master {new.pid} exited after the old one was retired: the site is down.",
        new_master_pid=new.pid,
        log_of=new,
    )


def _promote(run: _Usr2) -> ReloadResult:
    """The new master takes over the pidfile; the answer, once only its generation serves."""
    ctx, old, new = run.ctx, run.ctx.master, run.new
    if _await_promotion(old, new, run.pidfile2):
        where = f" now in {new.pidfile}" if new.pidfile else ""
        ctx.recorder.phase(phases.PROMOTED, f"master {new.pid}{where}")
    else:
        ctx.recorder.phase(phases.PROMOTED, f"master {new.pid} has not rewritten its pidfile yet")
    note = ""
    if old.alive():
        note = f"; the old master {old.pid} is still draining requests"
    else:
        readiness.forget_master(old.pid)
    return reloaded(ctx, new, run.gen, note)


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


def _abort(ctx: ReloadContext, new: Master, pidfile2: Path | None, why: str) -> ReloadResult:
    old = ctx.master
    refusals = readiness.refusals_for_master(new.pid)
    reason = refusal_text(refusals) or why
    stopped = stop_master(new, new.graceful_timeout if new.facts else old.graceful_timeout)
    clean_pidfile2(pidfile2, new.pid)
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
