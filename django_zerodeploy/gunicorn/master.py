"""Find the Gunicorn master of *this* project and prove it before anything signals it.

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
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .. import readiness
from ..conf import app_settings
from ..exit_codes import DOWN, USAGE, CommandFailure
from ..osutil import live_process, started_at
from . import systemd
from .probe import gunicorn_args


@dataclass
class Master:
    """A proven Gunicorn arbiter."""

    pid: int
    pidfile: Path | None
    cwd: Path
    cmdline: list[str]
    environ: dict[str, str] = field(repr=False)  # may hold secrets: never printed
    under_systemd: bool
    daemon: bool
    preload: bool
    wsgi_app: str | None
    create_time: float = 0.0
    facts: readiness.MasterFacts | None = field(default=None, repr=False)
    # set once a signal really reached this master (or systemd reloaded it): from then on a
    # failure may have changed what serves
    signalled: bool = field(default=False, repr=False)

    # -- state ---------------------------------------------------------------------------------
    def process(self) -> psutil.Process | None:
        """The live process, only if it is still the one that was proved."""
        proc = live_process(self.pid)
        if proc is None or not self.create_time:
            return proc
        started = started_at(self.pid)
        if started is None or abs(started - self.create_time) > 0.05:
            return None
        return proc

    def alive(self) -> bool:
        return self.process() is not None

    def ppid(self) -> int | None:
        proc = self.process()
        with contextlib.suppress(psutil.Error):
            return proc.ppid() if proc else None
        return None

    def workers(self) -> list[psutil.Process]:
        proc = self.process()
        return worker_processes(proc) if proc else []

    def worker_pids(self) -> set[int]:
        return {w.pid for w in self.workers()}

    def signal(self, sig: int) -> None:
        """Send ``sig``, but only to the process that was proved (never to a reused pid)."""
        proc = self.process()
        if proc is None:
            raise CommandFailure(
                f"Gunicorn master {self.pid} is gone; nothing was signalled.", DOWN
            )
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            raise CommandFailure(
                f"Gunicorn master {self.pid} is gone; nothing was signalled.", DOWN
            ) from None
        except (psutil.AccessDenied, PermissionError):
            raise CommandFailure(
                f"No permission to signal Gunicorn master {self.pid} (owned by user "
                f"{process_owner(proc)}): run this command as that user.",
                USAGE,
            ) from None
        self.signalled = True

    @property
    def python(self) -> str:
        """The interpreter the master runs (the virtualenv's, not the resolved binary)."""
        if self.facts and self.facts.executable:
            return self.facts.executable
        first = self.cmdline[0] if self.cmdline else "python3"
        if os.path.isabs(first):
            return first
        found = shutil.which(first, path=self.environ.get("PATH"))
        return found or first

    @property
    def args(self) -> list[str] | None:
        """Gunicorn's own arguments, as a re-exec would pass them."""
        if self.facts and self.facts.argv:
            return list(self.facts.argv[1:])
        return gunicorn_args(self.cmdline)

    @property
    def graceful_timeout(self) -> float:
        return self.facts.graceful_timeout if self.facts else 30.0

    def describe(self) -> str:
        mode = "daemon" if self.daemon else "foreground"
        extra = ", under systemd" if self.under_systemd else ""
        where = f"pidfile {self.pidfile}" if self.pidfile else "no pidfile"
        return f"pid {self.pid} ({mode}{extra}, {len(self.workers())} workers, {where})"


def process_owner(proc: psutil.Process) -> str:
    """The user name a process runs as (its uid if the name is unknown)."""
    with contextlib.suppress(psutil.Error):
        return proc.username()
    with contextlib.suppress(psutil.Error):
        return str(proc.uids().real)
    return "unknown"


# -- recognising processes ---------------------------------------------------------------------
def is_gunicorn_cmdline(cmdline: list[str]) -> bool:
    for part in cmdline[:4]:
        path = Path(part)
        if part == "gunicorn" or part.startswith("gunicorn:") or path.name == "gunicorn":
            return True
        if path.name == "__main__.py" and path.parent.name == "gunicorn":
            return True
    return False


def _environ(proc: psutil.Process) -> dict[str, str]:
    with contextlib.suppress(psutil.Error):
        return dict(proc.environ())
    return {}


def _is_gunicorn(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return is_gunicorn_cmdline(proc.cmdline())
    return False


def is_child_master(child: psutil.Process, parent_pid: int) -> bool:
    """A master re-executed by ``parent_pid`` after a USR2 (Gunicorn puts GUNICORN_PID in the
    new master's environment)."""
    return _environ(child).get("GUNICORN_PID") == str(parent_pid) and _is_gunicorn(child)


def worker_processes(master: psutil.Process) -> list[psutil.Process]:
    """The workers of a master: its Gunicorn children that are not a re-executed master."""
    with contextlib.suppress(psutil.Error):
        return [
            c
            for c in master.children()
            if _is_gunicorn(c)
            and not is_child_master(c, master.pid)
            and c.status() != psutil.STATUS_ZOMBIE
        ]
    return []


def child_masters(master: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [c for c in master.children() if is_child_master(c, master.pid)]
    return []


def classify(proc: psutil.Process, wait: float = 2.0) -> tuple[str, str]:
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
        if parent is not None and _is_gunicorn(parent) and not is_child_master(proc, parent.pid):
            return "worker", f"pid {proc.pid} is a worker of Gunicorn master {parent.pid}"
    deadline = time.monotonic() + wait
    while not worker_processes(proc):
        if time.monotonic() >= deadline:
            return "other", f"pid {proc.pid} is a Gunicorn process without workers"
        time.sleep(0.1)
    return "arbiter", ""


def _cwd(proc: psutil.Process) -> Path | None:
    with contextlib.suppress(psutil.Error, OSError):
        return Path(proc.cwd()).resolve()
    return None


def belongs_to_project(proc: psutil.Process) -> bool:
    """Its working directory is in this repository, or its workers report into this project's
    runtime directory (the directory is per project)."""
    cwd = _cwd(proc)
    repo = app_settings.repo_dir
    if cwd is not None and (cwd == repo or repo in cwd.parents):
        return True
    facts = readiness.read_master_facts(proc.pid)
    return bool(facts and cwd is not None and Path(facts.cwd).resolve() == cwd)


# -- building a Master -------------------------------------------------------------------------
def _option(cmdline: list[str], *names: str) -> str | None:
    for index, part in enumerate(cmdline):
        for name in names:
            if part == name and index + 1 < len(cmdline):
                return cmdline[index + 1]
            if name.startswith("--") and part.startswith(name + "="):
                return part.split("=", 1)[1]
    return None


def build_master(proc: psutil.Process, pidfile: Path | None = None) -> Master:
    """A Master from a proved process: facts its workers reported, else its command line."""
    cmdline = proc.cmdline()
    environ = _environ(proc)
    facts = readiness.read_master_facts(proc.pid)
    args = (facts.argv[1:] if facts and facts.argv else gunicorn_args(cmdline)) or []
    if pidfile is None:
        configured = facts.pidfile if facts else _option(args, "-p", "--pid")
        if configured:
            pidfile = (
                Path(configured)
                if os.path.isabs(configured)
                else (_cwd(proc) or Path()) / configured
            )
    positional = [a for a in args if not a.startswith("-") and ":" in a]
    return Master(
        pid=proc.pid,
        pidfile=pidfile,
        cwd=_cwd(proc) or Path("/"),
        cmdline=cmdline,
        environ=environ,
        under_systemd=systemd.is_under_systemd(proc.pid, proc.ppid(), environ),
        daemon=facts.daemon if facts else ("-D" in args or "--daemon" in args),
        preload=facts.preload if facts else "--preload" in args,
        wsgi_app=facts.wsgi_app if facts else (positional[-1] if positional else None),
        create_time=proc.create_time(),
        facts=facts,
    )


# -- finding ---------------------------------------------------------------------------------
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
        if classify(proc, wait=0.5)[0] == "arbiter" and belongs_to_project(proc):
            found.append(proc)
    return found


def _listing(procs: list[psutil.Process]) -> str:
    parts = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            parts.append(f"pid {proc.pid} in {proc.cwd()}")
    return "; ".join(parts)


def _prove(pid: int, source: str) -> tuple[psutil.Process | None, str, int]:
    """(the proved process, or None with why and the exit code to use)."""
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None, f"{source} names pid {pid}, which is not running (stale)", DOWN
    kind, why = classify(proc)
    if kind == "arbiter":
        if belongs_to_project(proc):
            return proc, "", 0
        cwd = _cwd(proc)
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
            proc, problem, code = _prove(pid, f"pidfile {path}")
            if proc is not None:
                return build_master(proc, path)
    elif unit:
        pid = systemd.main_pid(unit)
        if not pid:
            problem = f"systemd unit {unit} is not running (no MainPID)"
        else:
            proc, problem, code = _prove(pid, f"MainPID of {unit}")
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


def serving_releases(master: Master) -> set[str]:
    """Releases that the master's live, ready workers report."""
    return {r.release for r in readiness.reports_for_master(master.pid) if r.ready}
