"""One long-lived daemon thread ("lane") per check.

Why not a new thread per probe: a check that hangs (a database that accepts and never answers)
would leave one stuck thread behind per round. With lanes a hung check holds only its own lane;
the runner sees the lane is still busy and reports ``fail`` at once instead of piling up.
Lanes are per process: a forked Gunicorn worker gets fresh ones.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class Lane:
    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._current: Future[Any] | None = None
        self._submitted_at = 0.0
        self._thread = threading.Thread(target=self._loop, name=f"healthz:{name}", daemon=True)
        self._thread.start()

    def busy_since(self) -> float | None:
        """monotonic() when the unfinished job was submitted, or None when the lane is free."""
        current = self._current
        if current is not None and not current.done():
            return self._submitted_at
        return None

    def submit(self, func: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._current = future
        self._submitted_at = time.monotonic()
        self._queue.put((func, future))
        return future

    def _loop(self) -> None:
        while True:
            func, future = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(func())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
                future.set_exception(exc)


_lanes: dict[str, Lane] = {}
_lanes_pid = 0
_lock = threading.Lock()


def lane(key: str) -> Lane:
    """The lane for one check key in this process (created on first use)."""
    global _lanes_pid
    with _lock:
        if _lanes_pid != os.getpid():  # threads do not survive fork()
            _lanes.clear()
            _lanes_pid = os.getpid()
        found = _lanes.get(key)
        if found is None:
            found = _lanes[key] = Lane(key)
        return found
