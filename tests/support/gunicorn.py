"""A real Gunicorn serving the server clone: started in its own process group, stopped by its
pid and reaped at teardown, never left running."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from .site import Site


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def connection(
    port: int | None, uds: str | None, timeout: float = 10
) -> http.client.HTTPConnection:
    if uds:
        return UnixHTTPConnection(uds, timeout=timeout)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


class Gunicorn:
    """One Gunicorn master (and whatever masters USR2 makes of it) for a Site."""

    ready_path = "/healthz/live/"  # answers 200 once the workers serve

    def __init__(
        self,
        site: Site,
        *,
        workers: int = 2,
        uds: bool = False,
        daemon: bool = False,
        preload: bool = False,
        config: str | None = "gunicorn.conf.py",
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        worker_class: str = "sync",
        cwd: Path | None = None,
        launcher: list[str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        """``command``: the exact command line, as a user starts Gunicorn by hand or from a
        systemd unit (no config, pidfile or log of ours); the master is then followed through
        the process tree (USR2 children carry GUNICORN_PID)."""
        self.site = site
        self.cwd = cwd or site.server  # e.g. ROOT/current in the releases layout
        # what runs Gunicorn before its arguments, e.g. ROOT/current/.venv/bin/{python,gunicorn}
        self.launcher = launcher or [sys.executable, "-m", "gunicorn"]
        self.workers = workers
        self.daemon = daemon
        self.preload = preload
        self.config = config
        self.extra_args = extra_args
        self.extra_env = env or {}
        self.worker_class = worker_class
        self.uds = str(site.runtime / "gunicorn.sock") if uds else None
        if not uds and not site.port:
            site.port = free_port()
        self.port = None if uds else site.port
        self.log = site.root / "gunicorn.log"
        self.command = command
        if command:
            self.workers = int(_value(command, "-w", "--workers") or 1)
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen_masters: set[int] = set()

    # -- lifecycle -------------------------------------------------------------------------
    def argv(self) -> list[str]:
        if self.command:
            return list(self.command)
        bind = f"unix:{self.uds}" if self.uds else f"127.0.0.1:{self.port}"
        args = list(self.launcher)
        if self.config:
            args += ["-c", self.config]
        args += [
            "--bind",
            bind,
            "--pid",
            str(self.site.pidfile),
            "--workers",
            str(self.workers),
            "--worker-class",
            self.worker_class,
            "--timeout",
            "60",
            "--graceful-timeout",
            "30",
            "--error-logfile",
            str(self.log),
        ]
        if self.preload:
            args.append("--preload")
        if self.daemon:
            args.append("--daemon")
        args += list(self.extra_args)
        args.append("exampleproject.wsgi:application")
        return args

    def start(self, timeout: float = 60) -> Gunicorn:
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=self.cwd,
            env=self.site.env(**{"PWD": str(self.cwd), **self.extra_env}),
            stdin=subprocess.DEVNULL,
            stdout=open(self.site.root / "gunicorn.out", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.daemon and self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.proc.returncode}:\n{self.log_text()}")
            pid = self.master_pid()
            if pid:
                self.seen_masters.add(pid)
                if (
                    self.get(self.ready_path, timeout=2)[0] == 200
                    and len(self.worker_pids()) >= self.workers
                ):
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start within {timeout} s:\n{self.log_text()}")

    def master_pid(self) -> int | None:
        """The current master, from the pidfile (Gunicorn rewrites it after a USR2)."""
        if self.command:
            return self._oldest_master()
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.site.pidfile.read_text().strip())
            if psutil.pid_exists(pid):
                self.seen_masters.add(pid)
                return pid
        return None

    def _oldest_master(self) -> int | None:
        """Without a pidfile: the oldest live master among the one started and the masters
        USR2 made of it (the old one until it exits, as Gunicorn's pidfile would say)."""
        if self.proc:
            self.seen_masters.add(self.proc.pid)
        grew = True
        while grew:  # a re-exec'd master keeps GUNICORN_PID in its exec-time environment
            grew = False
            for proc in psutil.process_iter():
                with contextlib.suppress(psutil.Error):
                    if proc.pid in self.seen_masters or not _is_gunicorn(proc):
                        continue
                    parent = proc.environ().get("GUNICORN_PID", "")
                    if parent.isdigit() and int(parent) in self.seen_masters:
                        self.seen_masters.add(proc.pid)
                        grew = True
        live = []
        for pid in self.seen_masters:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE and _is_gunicorn(proc):
                    live.append((proc.create_time(), pid))
        return min(live)[1] if live else None

    def worker_pids(self, master: int | None = None) -> list[int]:
        master = master or self.master_pid()
        if not master:
            return []
        with contextlib.suppress(psutil.Error):
            return [c.pid for c in psutil.Process(master).children() if not _is_master(c)]
        return []

    def stop(self, timeout: float = 30) -> None:
        """TERM every master this fixture has seen, then KILL what is left of them and their
        workers. Only pids that this fixture started (or that they forked) are signalled."""
        self.master_pid()
        if self.proc and self.proc.pid:
            self.seen_masters.add(self.proc.pid)
        procs = []
        for pid in sorted(self.seen_masters):
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if _is_gunicorn(p):
                    procs.append(p)
                    procs.extend(p.children(recursive=True))
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGTERM)
        _gone, alive = psutil.wait_procs(procs, timeout=timeout)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        if self.proc:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)

    def kill_hard(self) -> None:
        """Stop on purpose, abruptly (to prove the load generator notices)."""
        self.stop(timeout=5)

    def log_text(self) -> str:
        parts = []
        for path in (self.log, self.site.root / "gunicorn.out"):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace")[-6000:])
        return "\n".join(parts)

    # -- requests --------------------------------------------------------------------------
    def get(
        self, path: str, timeout: float = 10, headers: dict[str, str] | None = None
    ) -> tuple[int | None, dict[str, str], bytes]:
        try:
            conn = connection(self.port, self.uds, timeout)
            conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        except OSError:
            return None, {}, b""

    def served_release(self) -> str | None:
        """RELEASE_NAME of the example site, from the page a client gets."""
        status, headers, _ = self.get("/")
        return headers.get("x-example-release") if status == 200 else None

    def served_releases(self, samples: int = 12) -> set[str | None]:
        return {self.served_release() for _ in range(samples)}

    def healthz(self) -> dict:
        status, _, body = self.get("/healthz/")
        data = json.loads(body) if body else {}
        data["_http_status"] = status
        return data

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _value(argv: list[str], *names: str) -> str | None:
    for index, part in enumerate(argv[:-1]):
        if part in names:
            return argv[index + 1]
    return None


def _is_gunicorn(p: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return any("gunicorn" in part for part in p.cmdline()[:4])
    return False


def _is_master(p: psutil.Process) -> bool:
    """A child that is itself a master (made by USR2) has gunicorn workers of its own."""
    with contextlib.suppress(psutil.Error):
        return bool(p.children())
    return False


def wait_for(predicate, timeout: float = 30, interval: float = 0.1):  # noqa: ANN001
    """Poll ``predicate`` until it returns a truthy value or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


__all__ = ["Gunicorn", "free_port", "wait_for", "connection", "Path"]


def gunicorn_venv(version: str) -> Path:
    """A small virtualenv with exactly Gunicorn ``version`` from PyPI, built once and cached
    outside the repository. Django, django-q2, psutil and django-zerodeploy come from the test
    virtualenv through a ``.pth`` file, which Python reads after the small venv's own
    site-packages: its ``gunicorn`` is the one imported, and ``bin/gunicorn`` starts it."""
    import hashlib
    import site as site_mod

    cache = Path(os.environ.get("ZERODEPLOY_TEST_CACHE", "/var/cache/django-zerodeploy-tests"))
    key = hashlib.sha256(sys.prefix.encode()).hexdigest()[:10]
    venv = cache / f"gunicorn-{version}-{key}"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a half-built venv is redone
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", f"gunicorn=={version}"],
                check=True,
                env=dict(os.environ, PIP_CONSTRAINT="", PIP_DISABLE_PIP_VERSION_CHECK="1"),
                timeout=600,
            )
            (venv / ".complete").touch()
    (own,) = (venv / "lib").glob("python*/site-packages")
    host = [p for p in site_mod.getsitepackages() if p.startswith(sys.prefix)]
    # addsitedir, not a plain path line: the host's own .pth files (an editable install) run too
    lines = [f"import site; site.addsitedir({path!r})" for path in host]
    (own / "zerodeploy-test-host.pth").write_text("\n".join(lines) + "\n")
    return venv
