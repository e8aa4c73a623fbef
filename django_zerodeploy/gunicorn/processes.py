"""Recognising Gunicorn's processes from the outside (psutil): an arbiter, its workers, a new
master it re-executed after a USR2, and who a process runs as. Nothing here signals."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import psutil


def process_owner(proc: psutil.Process) -> str:
    """The user name a process runs as (its uid if the name is unknown)."""
    with contextlib.suppress(psutil.Error):
        return proc.username()
    with contextlib.suppress(psutil.Error):
        return str(proc.uids().real)
    return "unknown"


def is_gunicorn_cmdline(cmdline: list[str]) -> bool:
    for part in cmdline[:4]:
        path = Path(part)
        if part == "gunicorn" or part.startswith("gunicorn:") or path.name == "gunicorn":
            return True
        if path.name == "__main__.py" and path.parent.name == "gunicorn":
            return True
    return False


def environ_of(proc: psutil.Process) -> dict[str, str]:
    with contextlib.suppress(psutil.Error):
        return dict(proc.environ())
    return {}


def is_gunicorn(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return is_gunicorn_cmdline(proc.cmdline())
    return False


def is_child_master(child: psutil.Process, parent_pid: int) -> bool:
    """A master re-executed by ``parent_pid`` after a USR2 (Gunicorn puts GUNICORN_PID in the
    new master's environment)."""
    environ = environ_of(child)
    if not environ:  # another user's process: a re-executed master has workers of its own
        with contextlib.suppress(psutil.Error):
            return is_gunicorn(child) and any(is_gunicorn(c) for c in child.children())
        return False
    return environ.get("GUNICORN_PID") == str(parent_pid) and is_gunicorn(child)


def worker_processes(master: psutil.Process) -> list[psutil.Process]:
    """The workers of a master: its Gunicorn children that are not a re-executed master."""
    with contextlib.suppress(psutil.Error):
        return [
            c
            for c in master.children()
            if is_gunicorn(c)
            and not is_child_master(c, master.pid)
            and c.status() != psutil.STATUS_ZOMBIE
        ]
    return []


def child_masters(master: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [c for c in master.children() if is_child_master(c, master.pid)]
    return []


def process_kind(proc: psutil.Process, wait: float = 2.0) -> tuple[str, str]:
    """("arbiter" | "worker" | "other" | "gone", a few words on why)."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return "gone", f"pid {proc.pid} has exited"
        cmdline = proc.cmdline()
        name = proc.name()
    except psutil.NoSuchProcess:
        return "gone", f"pid {proc.pid} is not running"
    except psutil.AccessDenied:
        return "other", f"pid {proc.pid} belongs to another user"
    if not is_gunicorn_cmdline(cmdline):
        shown = " ".join(cmdline)[:80] or name
        return "other", f"pid {proc.pid} is {name!r} ({shown}), not Gunicorn"
    if any("worker [" in part for part in cmdline[:1]):  # setproctitle's "gunicorn: worker [...]"
        return "worker", f"pid {proc.pid} is a Gunicorn worker, not the master"
    with contextlib.suppress(psutil.Error):
        parent = proc.parent()
        if parent is not None and is_gunicorn(parent) and not is_child_master(proc, parent.pid):
            return "worker", f"pid {proc.pid} is a worker of Gunicorn master {parent.pid}"
    deadline = time.monotonic() + wait
    while not worker_processes(proc):
        if time.monotonic() >= deadline:
            return "other", f"pid {proc.pid} is a Gunicorn process without workers"
        time.sleep(0.1)
    return "arbiter", ""


def cwd_of(proc: psutil.Process) -> Path | None:
    with contextlib.suppress(psutil.Error, OSError):
        return Path(proc.cwd()).resolve()
    return None
