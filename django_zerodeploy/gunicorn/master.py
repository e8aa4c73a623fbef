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
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .. import readiness
from ..conf import app_settings
from ..exit_codes import DOWN, USAGE, CommandFailure
from ..osutil import live_process, started_at, wait_exit
from ..preflight import PROCESS_ONLY_ENV
from . import privilege, systemd
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
    user: str = ""  # who it runs as
    uid: int | None = None
    unit: str | None = None  # the systemd service it runs in, when known
    environ_known: bool = True  # False: another user's, unreadable (environ is then empty)
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

    def wait_gone(self, seconds: float, interval: float = 0.025) -> bool:
        """Wait up to ``seconds`` for this master to exit: woken the moment it does (a pidfd),
        polling every ``interval`` where pidfds are unavailable. True once it is gone."""
        if not self.alive():
            return True
        exited = wait_exit(self.pid, seconds, self.alive)
        if exited is not None:
            return exited or not self.alive()
        deadline = time.monotonic() + seconds
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
        return True

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
        """Send ``sig``, but only to the process that was proved (never to a reused pid); to
        a master of another user through ``sudo -n -u USER kill`` (see ``privilege``)."""
        proc = self.process()
        if proc is None:
            raise CommandFailure(
                f"Gunicorn master {self.pid} is gone; nothing was signalled.", DOWN
            )
        if privilege.needs_sudo(self.uid):
            self._signal_through_sudo(sig)
            return
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

    def _signal_through_sudo(self, sig: int) -> None:
        argv = privilege.kill_argv(self.user, sig, self.pid)
        ran = privilege.run(argv, timeout=30)
        if not ran.ok:
            if not self.alive():
                raise CommandFailure(
                    f"Gunicorn master {self.pid} is gone; nothing was signalled.", DOWN
                )
            raise CommandFailure(
                f"`sudo -n {' '.join(argv)}` failed: {ran.last_lines(2) or ran.returncode}.",
                USAGE,
            )
        self.signalled = True

    def cannot_signal(self, signals: tuple[int, ...]) -> CommandFailure | None:
        """Why this master of another user cannot be sent ``signals`` (None: it can)."""
        if not privilege.needs_sudo(self.uid):
            return None
        names = tuple(signal.Signals(s).name.removeprefix("SIG") for s in signals)
        for sig in signals:
            argv = privilege.kill_argv(self.user, sig, self.pid)
            ok, why = privilege.allowed(argv)
            if not ok:
                line = privilege.sudoers_line(argv, any_pid_signals=names)
                what = f"Gunicorn master {self.pid} runs as user {self.user}" + (
                    f" (unit {self.unit})" if self.unit else ""
                )
                if self.uid == 0:
                    line += (
                        "   # lets it send these signals to ANY process: prefer "
                        "RELOAD_STRATEGY 'systemd' with GUNICORN_SYSTEMD_UNIT"
                    )
                return privilege.missing_rule(argv, why, what, line)
        return None

    @property
    def child_environ(self) -> dict[str, str]:
        """The environment for fresh interpreters that must see what the master sees (the
        preflight, the deploy's release subprocesses): its own as it was exec'd, e.g. with a
        systemd unit's ``Environment=`` lines, or ours when it belongs to another user (its
        /proc environ is unreadable); never the variables that only a master may hold."""
        env = dict(self.environ) if self.environ_known else dict(os.environ)
        for name in PROCESS_ONLY_ENV:
            env.pop(name, None)
        return env

    @property
    def environ_note(self) -> str:
        """Which environment ``child_environ`` is, in words for a step's output."""
        if self.environ_known:
            return f"with Gunicorn master {self.pid}'s environment"
        return (
            f"with this shell's environment: Gunicorn master {self.pid}'s cannot be read "
            f"(it runs as {self.user})"
        )

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
        if self.unit:
            extra += f" unit {self.unit}"
        if self.uid is not None and self.uid != os.geteuid():
            extra += f", as user {self.user}"
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
    environ = _environ(child)
    if not environ:  # another user's process: a re-executed master has workers of its own
        with contextlib.suppress(psutil.Error):
            return _is_gunicorn(child) and any(_is_gunicorn(c) for c in child.children())
        return False
    return environ.get("GUNICORN_PID") == str(parent_pid) and _is_gunicorn(child)


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


def _inside_repo(path: Path) -> bool:
    repo = app_settings.repo_dir
    return path == repo or repo in path.parents


def belongs_to_project(proc: psutil.Process) -> bool:
    """Its working directory is in this repository, or its workers report into this project's
    runtime directory (the directory is per project). For another user's master, whose working
    directory cannot be read, ``_belongs_across_users``."""
    cwd = _cwd(proc)
    if cwd is None:
        return _belongs_across_users(proc)
    if _inside_repo(cwd):
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
            if os.path.isabs(part) and _inside_repo(Path(os.path.abspath(part))):
                return True
    facts = readiness.read_master_facts(proc.pid)
    if not facts or not facts.cwd or not _inside_repo(Path(facts.cwd).resolve()):
        return False
    return any(r.ready for r in readiness.reports_for_master(proc.pid))


def gunicorn_chdirs(cmdline: list[str]) -> list[str]:
    value = _option(gunicorn_args(cmdline) or [], "--chdir")
    return [value] if value else []


def master_binds(master: Master) -> list[str]:
    """The addresses the master listens on: as its workers reported them, else ``-b/--bind``
    from its command line, else Gunicorn's default."""
    if master.facts and master.facts.bind:
        return list(master.facts.bind)
    args = master.args or []
    binds = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-b", "--bind")] + [
        a.split("=", 1)[1] for a in args if a.startswith("--bind=")
    ]
    return binds or ["127.0.0.1:8000"]


def cross_user_problem(master: Master) -> str:
    """Why a master of another user cannot be reloaded from here ('' when it can): its workers
    must report into this project's runtime directory, which both users must then share."""
    if master.uid is None or master.uid == os.geteuid() or master.facts is not None:
        return ""
    return (
        f"Gunicorn master {master.pid} runs as user {master.user}, and its workers do not "
        f"report into this project's runtime directory {app_settings.runtime_dir}: set "
        "ZERODEPLOY['RUNTIME_DIR'] to one directory both users share (group-writable, not "
        "writable by others; see docs/migrating.md) and restart Gunicorn once"
    )


SIGNALS = {  # what each strategy sends the master (the sudoers line must allow them all)
    "usr2": (signal.SIGUSR2, signal.SIGWINCH, signal.SIGTERM),
    "hup": (signal.SIGHUP,),
}


def reload_blocked(
    master: Master, strategy: str, unit: str | None, hooked: bool = False
) -> CommandFailure | None:
    """Why this user cannot reload ``master`` with ``strategy`` (a master of another user
    whose ``hooked`` workers report elsewhere, or no sudoers rule for the exact command); None
    when it can. Runs nothing but ``sudo -n -l``; checked before any step changes anything."""
    problem = cross_user_problem(master) if hooked else ""
    if problem:
        return CommandFailure(problem + "; nothing was signalled.", USAGE)
    if strategy == "systemd":
        return systemd.cannot_reload(unit) if unit else None
    return master.cannot_signal(SIGNALS.get(strategy, ()))


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
    uid = _uid(proc)
    under_systemd = systemd.is_under_systemd(proc.pid, proc.ppid(), environ)
    return Master(
        pid=proc.pid,
        pidfile=pidfile,
        cwd=_master_cwd(proc, facts),
        cmdline=cmdline,
        environ=environ,
        under_systemd=under_systemd,
        daemon=facts.daemon if facts else ("-D" in args or "--daemon" in args),
        preload=facts.preload if facts else "--preload" in args,
        wsgi_app=facts.wsgi_app if facts else (positional[-1] if positional else None),
        create_time=proc.create_time(),
        facts=facts,
        user=process_owner(proc),
        uid=uid,
        unit=(systemd.unit_of(proc.pid) if under_systemd else None)
        or app_settings.GUNICORN_SYSTEMD_UNIT,
        environ_known=bool(environ) or uid == os.geteuid() or privilege.is_root(),
    )


def _master_cwd(proc: psutil.Process, facts: readiness.MasterFacts | None) -> Path:
    """Its working directory; for another user's master (unreadable), what its workers
    reported, else its --chdir, else the checkout."""
    cwd = _cwd(proc)
    if cwd is not None:
        return cwd
    if facts and facts.cwd:
        return Path(facts.cwd)
    with contextlib.suppress(psutil.Error):
        for chdir in gunicorn_chdirs(proc.cmdline()):
            return Path(chdir)
    return app_settings.repo_dir


def _uid(proc: psutil.Process) -> int | None:
    with contextlib.suppress(psutil.Error):
        return proc.uids().real
    return None


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
        if cwd is None:
            return None, f"{source} names pid {pid}, {_unproved(proc)}", USAGE
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


def _unproved(proc: psutil.Process) -> str:
    """A master of another user that nothing proves to be this project's, in words."""
    return (
        f"a Gunicorn master running as user {process_owner(proc)} whose working directory "
        "this user cannot read; nothing proves it is this project's: its command line does not "
        f"run from {app_settings.repo_dir} (its virtualenv or --chdir) and no worker of it "
        f"reported into the runtime directory {app_settings.runtime_dir} (set "
        "ZERODEPLOY['RUNTIME_DIR'] to a directory both users share, see docs/migrating.md)"
    )


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
        if _cwd(proc) is None and classify(proc, wait=0.2)[0] == "arbiter":
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
        others = other_users_masters()
        if others:
            raise CommandFailure(
                f"No Gunicorn master is proved to be this project's: pid {others[0].pid} is "
                f"{_unproved(others[0])}; nothing was signalled.",
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


def serving_releases(master: Master) -> set[str]:
    """Releases that the master's live, ready workers report."""
    return {r.release for r in readiness.reports_for_master(master.pid) if r.ready}
