"""A USR2 re-exec that runs from the release ``ROOT/current`` names *now*.

Gunicorn re-executes ``sys.executable + sys.argv`` after ``os.chdir(START_CTX["cwd"])``, all
three fixed when the first master started: inside the old release (Gunicorn #394, #1898). And
its start directory comes from ``$PWD`` when that is the same inode as the real one, so a master
started from ``ROOT/current`` in a shell puts ``ROOT/current`` itself on ``sys.path``: its
workers would import lazily through the link, from whatever release it names later.

``follow_current`` rewrites, in the forked child right before the exec (Gunicorn's
``pre_exec``), the interpreter, the arguments, the directory and ``PWD`` that point into the old
release, through ``ROOT/current`` or into a venv of ``ROOT/venvs`` so that they point into the
resolved new release and its venv. It imports
nothing of Django: it runs in the master.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from .layout import VENV_LINK, root_of


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
    venvs = _venv_prefixes(root.venvs_dir)
    venv = os.path.join(new, VENV_LINK)

    def moved(value: object) -> str:
        return _moved(_moved(str(value), prefixes, new), venvs(str(value)), venv)

    start_ctx["cwd"] = new
    start_ctx[0] = moved(start_ctx[0])
    start_ctx["args"] = [moved(a) for a in start_ctx.get("args", [])]
    environ["PWD"] = new
    return new


def _venv_prefixes(venvs_dir: Path) -> Callable[[str], list[str]]:
    """A master started as ``ROOT/current/.venv/bin/gunicorn`` (what ``--init-releases``
    prints, and a systemd ``ExecStart=``) runs the interpreter of that script's ``#!`` line:
    ``ROOT/venvs/<key>/bin/python``, a path in no release. Those venv paths move to the new
    release's ``.venv``, or the new master would run the old venv's packages."""
    bases = {str(venvs_dir), os.path.realpath(venvs_dir)}

    def prefixes(value: str) -> list[str]:
        tail = value.partition("=")[2] if value.startswith("--") else value
        for base in bases:
            if tail.startswith(base + os.sep):
                key = tail[len(base) + 1 :].split(os.sep, 1)[0]
                return [os.path.join(base, key)]
        return []

    return prefixes
