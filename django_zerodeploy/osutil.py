"""Small operating-system facts and file writes that several modules need the same way."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import psutil


def os_user() -> str:
    """The OS user name, or the uid where the password database does not know it."""
    with contextlib.suppress(KeyError, OSError):
        return getpass.getuser()
    return str(os.getuid())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a reader never sees half a file (temp file + rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
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


def started_at(pid: int) -> float | None:
    """When ``pid`` started (epoch seconds), or None if it does not run: with the pid, this
    tells a process from a later one that reused its pid."""
    process = live_process(pid)
    if process is None:
        return None
    with contextlib.suppress(psutil.Error):
        return process.create_time()
    return None
