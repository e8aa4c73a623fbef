"""A USR2 re-exec that runs from the release ``ROOT/current`` names *now*.

Gunicorn re-executes ``sys.executable + sys.argv`` after ``os.chdir(START_CTX["cwd"])``, all
three fixed when the first master started: inside the old release (Gunicorn #394, #1898). And
its start directory comes from ``$PWD`` when that is the same inode as the real one, so a master
started from ``ROOT/current`` in a shell puts ``ROOT/current`` itself on ``sys.path``: its
workers would import lazily through the link, from whatever release it names later.

``follow_current`` rewrites, in the forked child right before the exec (Gunicorn's
``pre_exec``), the interpreter, the arguments, the directory and ``PWD`` that point into the old
release or through ``ROOT/current`` so that they point into the resolved new release. It imports
nothing of Django: it runs in the master.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from .layout import root_of


def _moved(value: str, prefixes: list[str], new: str) -> str:
    head, sep, tail = value.partition("=") if value.startswith("--") else ("", "", value)
    for prefix in prefixes:
        if tail == prefix or tail.startswith(prefix + os.sep):
            return f"{head}{sep}{new}{tail[len(prefix) :]}"
    return value


def follow_current(start_ctx: dict[Any, Any], environ: MutableMapping[str, str]) -> str | None:
    """Point a re-exec at the release ``ROOT/current`` resolves to; returns it (None when the
    master does not run from a release)."""
    cwd = str(start_ctx.get("cwd") or "")
    root = root_of(Path(cwd)) if cwd else None
    if root is None:
        return None
    new = os.path.realpath(root.current_link)
    prefixes = sorted(
        {cwd, os.path.realpath(cwd), str(root.current_link)} - {new}, key=len, reverse=True
    )
    start_ctx["cwd"] = new
    start_ctx[0] = _moved(str(start_ctx[0]), prefixes, new)
    start_ctx["args"] = [_moved(str(a), prefixes, new) for a in start_ctx.get("args", [])]
    environ["PWD"] = new
    return new
