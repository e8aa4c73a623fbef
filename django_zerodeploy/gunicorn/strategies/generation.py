"""A new generation of workers: observed from their reports (or, without the hook, from
Gunicorn's request loop), waited for, checked to run the checkout's one release, and the
success answer once it serves. Shared by usr2 and the reloads in place."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ... import healthz_url
from ...conf import app_settings
from ...exit_codes import FAILED, OK
from .. import heartbeat, readiness
from .. import result as phases
from ..master import Master
from ..result import ReloadResult
from .context import POLL, VERIFY_WAIT, ReloadContext, wait_until

# Why waiting for a generation stopped before it was complete.
REFUSED_TO_BOOT = "refused to boot"
MASTER_EXITED = "master exited"
TIMED_OUT = "timed out"


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


@dataclass
class Unverified:
    """Why a ready generation does not count as the checkout's."""

    why: str
    mixed: bool  # its workers report several releases (else: one, not the checkout's)


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


def await_generation(
    ctx: ReloadContext,
    master: Master,
    since: float,
    deadline: float,
    exclude: set[int] = frozenset(),  # type: ignore[assignment]
    stop_on_refusal: bool = False,
) -> tuple[Generation, str]:
    """Watch the generation of ``master`` until it is complete (''), or why it stopped:
    REFUSED_TO_BOOT (only with ``stop_on_refusal``), MASTER_EXITED or TIMED_OUT."""
    while True:
        gen = observe(master, ctx.config.workers, since, exclude, ctx.hooked)
        if gen.complete:
            return gen, ""
        if stop_on_refusal and gen.refusals:
            return gen, REFUSED_TO_BOOT
        if not gen.master_alive:
            return gen, MASTER_EXITED
        if time.monotonic() > deadline:
            return gen, TIMED_OUT
        time.sleep(POLL)


def check_generation(ctx: ReloadContext, master: Master, gen: Generation) -> Unverified | None:
    """Record the ready generation, then: does it run one release, the checkout's? (None: yes.)"""
    ctx.recorder.phase(
        phases.NEW_GENERATION_READY,
        f"{gen.count()} workers of master {master.pid} on release {short_releases(gen.releases)}",
    )
    mixed = mixed_releases(gen)
    if mixed:
        return Unverified(mixed, mixed=True)
    if ctx.hooked and ctx.expected_release and gen.releases != {ctx.expected_release}:
        return Unverified(
            f"the new workers run release {short_releases(gen.releases)}, "
            f"but the checkout is at {ctx.expected_release[:12]}",
            mixed=False,
        )
    return None


def serving(master: Master) -> bool:
    """``master`` is alive and has a worker that serves: one that reported ready, or (without
    the hook) one in Gunicorn's request loop."""
    if not master.alive():
        return False
    if any(r.ready for r in readiness.reports_for_master(master.pid)):
        return True
    return any(heartbeat.in_request_loop(pid) for pid in master.worker_pids())


def short_releases(releases: set[str]) -> str:
    return ", ".join(sorted(r[:12] or "unknown" for r in releases)) or "none"


def mixed_releases(gen: Generation) -> str:
    """Why a new generation whose ready workers report several releases is not verified (''
    when they agree), even when one of them is the checkout's: which one answers is luck."""
    if len(gen.releases) < 2:
        return ""
    return (
        f"the new workers report {len(gen.releases)} different releases "
        f"({short_releases(gen.releases)}), so which one serves a request would be luck"
    )


def refusal_text(refusals: list[readiness.WorkerReport]) -> str:
    if not refusals:
        return ""
    first = refusals[0]
    return f"worker {first.pid} refused to boot: {first.detail}"


def reloaded(ctx: ReloadContext, master: Master, gen: Generation, note: str = "") -> ReloadResult:
    """The success result: ``master`` serves the one release its ready generation reports."""
    (release,) = gen.releases  # one release: mixed_releases() refused several
    if not ctx.hooked:
        return verified_from_outside(ctx, master, gen, note)
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


def verified_from_outside(
    ctx: ReloadContext, master: Master, gen: Generation, note: str
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
