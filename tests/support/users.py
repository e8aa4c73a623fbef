"""Another user for tests that need a real permission failure (root itself never meets one):
uid 65534 (nobody), a skip marker for tests that must be root to change owners or drop
privileges, and a fork that runs one action as nobody."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

NOBODY = 65534
needs_root = pytest.mark.skipif(os.getuid() != 0, reason="changes file owners / drops privileges")


def as_nobody(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``action`` in a fork of this process that dropped root for uid 65534: a real
    permission failure, which root itself never meets."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        payload = '{"error": "child failed"}'
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            payload = json.dumps(action())
        except BaseException as exc:  # noqa: BLE001
            payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        finally:
            with os.fdopen(write, "w") as handle:
                handle.write(payload)
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        data = handle.read()
    os.waitpid(pid, 0)
    return json.loads(data)
