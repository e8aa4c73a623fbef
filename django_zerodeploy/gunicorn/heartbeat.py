"""Is a Gunicorn worker past its app load? Read from outside, for masters without our hook.

Every Gunicorn worker (22 and newer) owns an unlinked temporary file, ``wgunicorn-*``, made by
its master right before the fork (``workers/workertmp.py``); the worker closes its siblings'
files, so it holds exactly one. Its request loop calls ``notify()`` on every turn, which sets
the file's times with ``os.utime(fd, (monotonic, monotonic))``: the arbiter compares that
heartbeat with ``time.monotonic()`` to find hung workers. Before the first turn the file's
mtime is the wall-clock time it was created; after it, a monotonic reading (seconds since
boot). The ctime is always wall-clock. So a file whose mtime lies far behind its ctime belongs
to a worker that has loaded the application, run ``post_worker_init`` and entered its request
loop: the same moment our hook marks as ready, minus the URLconf and smoke checks.

Reading ``/proc/PID/fd`` needs the worker's user (or root).
"""

from __future__ import annotations

import contextlib
import os

PREFIX = "wgunicorn-"
# mtime (monotonic, seconds since boot) behind ctime (wall clock, seconds since 1970) by more
# than this: the worker has beaten at least once. Creation leaves them within milliseconds.
GAP = 86400.0


def tmp_file_stat(pid: int) -> os.stat_result | None:
    """The stat of the worker's heartbeat file, None when it holds none (or cannot be read)."""
    folder = f"/proc/{pid}/fd"
    with contextlib.suppress(OSError):
        for fd in os.listdir(folder):
            with contextlib.suppress(OSError):
                target = os.readlink(f"{folder}/{fd}")
                if os.path.basename(target).startswith(PREFIX):
                    return os.stat(f"{folder}/{fd}")
    return None


def in_request_loop(pid: int) -> bool:
    """True once worker ``pid`` has entered Gunicorn's request loop (its app is loaded)."""
    st = tmp_file_stat(pid)
    return st is not None and st.st_ctime - st.st_mtime > GAP
