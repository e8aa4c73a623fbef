"""Small operating-system facts and file writes that several modules need the same way."""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import math
import os
import select
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil


def os_user() -> str:
    """The OS user name, or the uid where the password database does not know it."""
    with contextlib.suppress(KeyError, OSError):
        return getpass.getuser()
    return str(os.getuid())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a reader never sees half a file (temp file + rename). Readable by the
    directory's group too: in a runtime directory group-shared between the Gunicorn user and
    the deploying user each must read what the other wrote (the directory decides who can)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        os.fchmod(fd, 0o640)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def live_process(pid: int) -> psutil.Process | None:
    """The process ``pid`` if it runs (not a zombie), else None."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.Error:
        return None


def wait_exit(pid: int, seconds: float, same: Callable[[], bool]) -> bool | None:
    """Wait up to ``seconds`` for ``pid`` to exit, woken by the kernel (a pidfd becomes
    readable when the process exits; Linux 5.3+) instead of a sleep loop that adds up to its
    interval to every wait. ``same()`` says the pid is still the process meant (checked once the
    pidfd is open, so a reused pid is never waited for). True: it exited; False: still running
    after ``seconds``; None: no pidfd here, the caller polls."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd = opener(pid)
    except ProcessLookupError:
        return True
    except OSError:  # ENOSYS (old kernel), a sandbox that forbids it
        return None
    try:
        if not same():
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, math.ceil(seconds * 1000))))
    finally:
        os.close(fd)


def started_at(pid: int) -> float | None:
    """When ``pid`` started (epoch seconds), or None if it does not run: with the pid, this
    tells a process from a later one that reused its pid."""
    process = live_process(pid)
    if process is None:
        return None
    with contextlib.suppress(psutil.Error):
        return process.create_time()
    return None


def last_lines(path: str | os.PathLike[str], count: int, max_bytes: int = 65536) -> str:
    """The last ``count`` lines of a text file, reading backwards from its end and never more
    than ``max_bytes`` (a log can be gigabytes). '' when it cannot be read."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            data, pos = b"", end
            while pos > 0 and data.count(b"\n") <= count and end - pos < max_bytes:
                step = min(8192, pos, max_bytes - (end - pos))
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return "\n".join(lines[-count:])


def runtime_subdir(parent: Path, name: str) -> Path:
    """``parent/name``, created with the group bits of ``parent`` (and its setgid bit): a
    private runtime directory gets a private folder, a group-shared one a shared folder,
    whichever user creates it first and whatever its umask."""
    path = parent / name
    if path.is_dir():
        return path
    shared = os.stat(parent).st_mode & (0o070 | 0o2000)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):  # created by the other user in the meantime
        os.chmod(path, 0o700 | shared)
    return path


def flock_within(
    fd: int, seconds: float, poll: float = 0.1, on_wait: Callable[[], object] | None = None
) -> bool:
    """Take an exclusive ``flock`` on ``fd``, waiting up to ``seconds`` (0: one try) for the
    process that holds it; ``on_wait`` runs once, when the lock turns out to be held. False
    when it is still held after ``seconds``; other OSErrors raise."""
    deadline = time.monotonic() + max(seconds, 0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            if on_wait is not None:
                on_wait()
                on_wait = None
            time.sleep(poll)
