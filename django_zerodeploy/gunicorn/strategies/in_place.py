"""hup and systemd (``systemctl reload``, whose ExecReload sends HUP): reload in place. Gunicorn
stops the old workers as soon as the new ones are forked, so these depend on the preflight, and
the verification can only tell whether the site came back."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from ...exit_codes import DOWN, FAILED, CommandFailure
from .. import result as phases
from .. import systemd
from ..result import ReloadResult
from .context import RETIRE_MARGIN, ReloadContext, wait_until
from .generation import (
    MASTER_EXITED,
    Generation,
    Unverified,
    await_generation,
    check_generation,
    refusal_text,
    reloaded,
    serving,
    short_releases,
)


def _in_place(ctx: ReloadContext, send: Callable[[], str]) -> ReloadResult:
    """Signal (``send``), wait for the new workers, check them, wait for the old ones to go."""
    master = ctx.master
    old_workers = master.worker_pids()
    since = time.time()
    ctx.recorder.phase(phases.SIGNAL, send())
    deadline = time.monotonic() + ctx.timeout
    gen, stopped = await_generation(ctx, master, since, deadline, exclude=old_workers)
    if stopped:
        return _not_ready(ctx, gen, stopped)
    unverified = check_generation(ctx, master, gen)
    if unverified is not None:
        return _unverified(ctx, gen, unverified)

    def old_gone() -> bool:
        return not (master.worker_pids() & old_workers)

    gone = wait_until(old_gone, master.graceful_timeout + RETIRE_MARGIN)
    ctx.recorder.phase(
        phases.OLD_RETIRED,
        f"{len(old_workers)} old workers " + ("exited" if gone else "still draining"),
    )
    if not master.alive():
        return ctx.failure(
            DOWN,
            f"The Gunicorn master {master.pid} exited after the reload: the site is down.",
            log_of=master,
        )
    return reloaded(ctx, master, gen)


def _not_ready(ctx: ReloadContext, gen: Generation, stopped: str) -> ReloadResult:
    """The master exited (the site is down) or the new workers were not all ready in time."""
    master = ctx.master
    if stopped == MASTER_EXITED:
        reason = refusal_text(gen.refusals) or "see Gunicorn's log"
        return ctx.failure(
            DOWN,
            f"The Gunicorn master {master.pid} exited during the reload: the site is down ({reason}).",
            log_of=master,
        )
    reason = refusal_text(gen.refusals)
    code = FAILED if serving(master) and not gen.ready else DOWN
    return ctx.failure(
        code,
        f"Only {gen.count()} new workers were ready {ctx.timeout:g} s after the reload"
        + (f" ({reason})" if reason else "")
        + ".",
        log_of=master,
    )


def _unverified(ctx: ReloadContext, gen: Generation, unverified: Unverified) -> ReloadResult:
    """In place, the old workers are on their way out: nothing to fall back to."""
    done = dict(workers_ready=len(gen.ready), workers_expected=gen.expected)
    if unverified.mixed:
        return ctx.result(
            False,
            DOWN,
            f"Reload not verified: {unverified.why}. Master {ctx.master.pid} now serves this mix: "
            "check the checkout and reload again.",
            **done,
        )
    (release,) = gen.releases
    return ctx.result(
        False,
        FAILED,
        f"The reloaded workers run release {short_releases(gen.releases)}, not the checkout's {ctx.expected_release[:12]} (a symlinked release directory? Gunicorn #394): the old release still serves.",
        release=release,
        **done,
    )


def run_hup(ctx: ReloadContext) -> ReloadResult:
    def send() -> str:
        ctx.master.signal(signal.SIGHUP)
        return f"HUP sent to master {ctx.master.pid}"

    return _in_place(ctx, send)


def run_systemd(ctx: ReloadContext) -> ReloadResult:
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
