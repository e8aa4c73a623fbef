"""A proven Gunicorn master (``Master``): its state, signals sent only to the process that was
proved, and its configuration as its workers reported it (``readiness.MasterFacts``) or, before
they did, as its command line says. ``finding`` finds one and ``proving`` proves it first."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ..conf import app_settings
from ..exit_codes import DOWN, USAGE, CommandFailure
from ..osutil import live_process, started_at, wait_exit
from ..preflight import PROCESS_ONLY_ENV
from . import privilege, readiness, systemd
from .probe import gunicorn_args, gunicorn_chdirs, option
from .processes import cwd_of, environ_of, process_owner, worker_processes


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
def build_master(proc: psutil.Process, pidfile: Path | None = None) -> Master:
    """A Master from a proved process: facts its workers reported, else its command line."""
    cmdline = proc.cmdline()
    environ = environ_of(proc)
    facts = readiness.read_master_facts(proc.pid)
    args = (facts.argv[1:] if facts and facts.argv else gunicorn_args(cmdline)) or []
    if pidfile is None:
        configured = facts.pidfile if facts else option(args, "-p", "--pid")
        if configured:
            pidfile = (
                Path(configured)
                if os.path.isabs(configured)
                else (cwd_of(proc) or Path()) / configured
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
    cwd = cwd_of(proc)
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


def serving_releases(master: Master) -> set[str]:
    """Releases that the master's live, ready workers report."""
    return {r.release for r in readiness.reports_for_master(master.pid) if r.ready}
