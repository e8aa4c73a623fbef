"""A real Gunicorn serving the server clone: started in its own process group, stopped by its
pid and reaped at teardown, never left running."""

from __future__ import annotations

import contextlib
import http.client
import json
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
    ) -> None:
        self.site = site
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
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen_masters: set[int] = set()

    # -- lifecycle -------------------------------------------------------------------------
    def argv(self) -> list[str]:
        bind = f"unix:{self.uds}" if self.uds else f"127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "gunicorn"]
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
            cwd=self.site.server,
            env=self.site.env(**self.extra_env),
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
                    self.get("/healthz/live/", timeout=2)[0] == 200
                    and len(self.worker_pids()) >= self.workers
                ):
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start within {timeout} s:\n{self.log_text()}")

    def master_pid(self) -> int | None:
        """The current master, from the pidfile (Gunicorn rewrites it after a USR2)."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.site.pidfile.read_text().strip())
            if psutil.pid_exists(pid):
                self.seen_masters.add(pid)
                return pid
        return None

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
