"""Stopping masters: a failed new one (TERM, then KILL), the old one once the new generation
serves (WINCH, TERM), and the leftovers of an interrupted usr2 (an unpromoted new master, a
stale ``pidfile.2``)."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import psutil

from ..finding import read_pidfile
from ..master import Master, build_master
from ..processes import child_masters
from .context import REAP_WAIT, RETIRE_MARGIN, wait_until


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


def retire(old: Master) -> str:
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


def pidfile2(master: Master) -> Path | None:
    """Where Gunicorn's new master of a USR2 writes its pid until it is promoted."""
    return Path(f"{master.pidfile}.2") if master.pidfile else None


def clean_up(old: Master, pidfile2: Path | None) -> list[str]:
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


def clean_pidfile2(pidfile2: Path | None, pid: int | None) -> None:
    if pidfile2 and pidfile2.exists():
        held, _ = read_pidfile(pidfile2)
        if held is None or held == pid or not psutil.pid_exists(held):
            with contextlib.suppress(OSError):
                pidfile2.unlink()
