"""Find the Gunicorn master of this project: from a pidfile, a systemd unit's MainPID or the
process table, each candidate proved (``proving``) before it becomes a ``Master``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil

from ..conf import app_settings
from ..exit_codes import DOWN, USAGE, CommandFailure
from . import systemd
from .master import Master, build_master
from .processes import cwd_of, is_gunicorn_cmdline, process_kind
from .proving import belongs_to_project, prove, unproved


def read_pidfile(path: Path) -> tuple[int | None, str]:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None, f"pidfile {path} does not exist"
    except OSError as exc:
        return None, f"pidfile {path} cannot be read ({exc.strerror})"
    try:
        return int(text), ""
    except ValueError:
        return None, f"pidfile {path} does not hold a pid ({text[:20]!r})"


def scan() -> list[psutil.Process]:
    """Gunicorn arbiters of this project among the running processes."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if not is_gunicorn_cmdline(cmdline):
            continue
        if process_kind(proc, wait=0.5)[0] == "arbiter" and belongs_to_project(proc):
            found.append(proc)
    return found


def _listing(procs: list[psutil.Process]) -> str:
    parts = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            parts.append(f"pid {proc.pid} in {proc.cwd()}")
    return "; ".join(parts)


def other_users_masters() -> list[psutil.Process]:
    """Gunicorn arbiters of other users that could not be proved (for the "not running"
    message: they are named, never signalled)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "uids"]):
        uids = proc.info.get("uids")
        if (
            not uids
            or uids.real == os.geteuid()
            or not is_gunicorn_cmdline(proc.info.get("cmdline") or [])
        ):
            continue
        if cwd_of(proc) is None and process_kind(proc, wait=0.2)[0] == "arbiter":
            found.append(proc)
    return found


def find_master(*, pidfile: str | Path | None = None, unit: str | None = None) -> Master:
    """The proved Gunicorn master of this project, from a pidfile, a systemd unit's MainPID or
    the process table. Raises CommandFailure; no process is ever signalled here."""
    pidfile = pidfile or app_settings.GUNICORN_PIDFILE
    unit = unit or app_settings.GUNICORN_SYSTEMD_UNIT
    problem, code = "", DOWN
    if pidfile:
        path = Path(pidfile)
        pid, problem = read_pidfile(path)
        if pid is not None:
            proc, problem, code = prove(pid, f"pidfile {path}")
            if proc is not None:
                return build_master(proc, path)
    elif unit:
        pid = systemd.main_pid(unit)
        if not pid:
            problem = f"systemd unit {unit} is not running (no MainPID)"
        else:
            proc, problem, code = prove(pid, f"MainPID of {unit}")
            if proc is not None:
                return build_master(proc)
    if problem and code == USAGE:
        raise CommandFailure(problem + "; nothing was signalled.", USAGE)

    found = scan()
    if problem:
        if found:
            raise CommandFailure(
                f"{problem}; nothing was signalled. A Gunicorn master of this project runs as "
                f"{_listing(found)}: point GUNICORN_PIDFILE (or --pidfile) at its pidfile.",
                USAGE,
            )
        raise CommandFailure(
            f"{problem}; nothing was signalled, and no Gunicorn master of this project "
            f"({app_settings.repo_dir}) is running.",
            DOWN,
        )
    if not found:
        others = other_users_masters()
        if others:
            raise CommandFailure(
                f"No Gunicorn master is proved to be this project's: pid {others[0].pid} is "
                f"{unproved(others[0])}; nothing was signalled.",
                USAGE,
            )
        raise CommandFailure(
            f"Gunicorn is not running for this project ({app_settings.repo_dir}): no master "
            "found (set GUNICORN_PIDFILE or use --pidfile if it runs elsewhere).",
            DOWN,
        )
    if len(found) > 1:
        raise CommandFailure(
            f"{len(found)} Gunicorn masters run for this project ({_listing(found)}); refusing to "
            "guess: set GUNICORN_PIDFILE or use --pidfile.",
            USAGE,
        )
    return build_master(found[0])
