"""Prove that a Gunicorn master is *this* project's before anything signals it.

A pidfile can be stale and a pid can be reused by another program: a signal sent on trust could
stop a database or a shell. So every pid is proved with psutil first: it is alive, its command
line is Gunicorn's, it is an arbiter (its workers are its children, it is not itself a worker),
and it belongs to this project (its working directory is inside the repository, or its workers
report into this project's runtime directory). ``Master.signal`` re-checks the process's start
time before each signal, so a pid that died and was reused in between is not signalled either.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil

from ..conf import app_settings
from ..exit_codes import DOWN, USAGE
from . import readiness
from .probe import gunicorn_chdirs
from .processes import cwd_of, process_kind, process_owner


def inside_repo(path: Path) -> bool:
    repo = app_settings.repo_dir
    return path == repo or repo in path.parents


def belongs_to_project(proc: psutil.Process) -> bool:
    """Its working directory is in this repository, or its workers report into this project's
    runtime directory (the directory is per project). For another user's master, whose working
    directory cannot be read, ``_belongs_across_users``."""
    cwd = cwd_of(proc)
    if cwd is None:
        return _belongs_across_users(proc)
    if inside_repo(cwd):
        return True
    facts = readiness.read_master_facts(proc.pid)
    return bool(facts and Path(facts.cwd).resolve() == cwd)


def _belongs_across_users(proc: psutil.Process) -> bool:
    """A master of another user (``/proc/PID/cwd`` unreadable) is this project's when its
    command line runs from this checkout (the checkout's virtualenv, ``--chdir``), or when a
    live worker of this very master (its child, booted after it started) reported into this
    project's runtime directory that the master runs in this checkout."""
    with contextlib.suppress(psutil.Error):
        for part in proc.cmdline()[:2] + gunicorn_chdirs(proc.cmdline()):
            if os.path.isabs(part) and inside_repo(Path(os.path.abspath(part))):
                return True
    facts = readiness.read_master_facts(proc.pid)
    if not facts or not facts.cwd or not inside_repo(Path(facts.cwd).resolve()):
        return False
    return any(r.ready for r in readiness.reports_for_master(proc.pid))


def prove(pid: int, source: str) -> tuple[psutil.Process | None, str, int]:
    """(the proved process, or None with why and the exit code to use)."""
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None, f"{source} names pid {pid}, which is not running (stale)", DOWN
    kind, why = process_kind(proc)
    if kind == "arbiter":
        if belongs_to_project(proc):
            return proc, "", 0
        cwd = cwd_of(proc)
        if cwd is None:
            return None, f"{source} names pid {pid}, {unproved(proc)}", USAGE
        return (
            None,
            (
                f"{source} names pid {pid}, a Gunicorn master of another project "
                f"(working directory {cwd}, this project is {app_settings.repo_dir})"
            ),
            USAGE,
        )
    if kind == "gone":
        return None, f"{source} names pid {pid}, which is not running (stale)", DOWN
    return None, f"{source} names {why}", DOWN


def unproved(proc: psutil.Process) -> str:
    """A master of another user that nothing proves to be this project's, in words."""
    return (
        f"a Gunicorn master running as user {process_owner(proc)} whose working directory "
        "this user cannot read; nothing proves it is this project's: its command line does not "
        f"run from {app_settings.repo_dir} (its virtualenv or --chdir) and no worker of it "
        f"reported into the runtime directory {app_settings.runtime_dir} (set "
        "ZERODEPLOY['RUNTIME_DIR'] to a directory both users share, see docs/migrating.md)"
    )
