"""Several hosts of one site on loopback, sharing one PostgreSQL database, behind a real
HAProxy: each host its own checkout (cloned from one origin), runtime directory, Gunicorn port
and qcluster (``Q_CLUSTER_NAME=deploy-<host>``)."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.gunicorn import Gunicorn, free_port
from tests.support.qcluster import QCluster
from tests.support.site import Site, git, make_site

# HAProxy's check timing, and the same values in each host's settings (the drain formula)
INTER_MS, FALL, RISE = 500, 2, 2


def psql(*sql: str, db: str = "postgres") -> None:
    for statement in sql:
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qAtc", statement],
            check=True,
            capture_output=True,
            timeout=60,
        )


@dataclass
class Host:
    name: str
    site: Site
    gunicorn: Gunicorn | None = None
    cluster: QCluster | None = None


@dataclass
class Fleet:
    root: Path
    database: str
    hosts: list[Host] = field(default_factory=list)
    haproxy: HAProxy | None = None

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def coordinator(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``manage.py deploy ARGS`` on the first host, as an operator would run it."""
        return self.hosts[0].site.manage("deploy", *args, check=False, timeout=timeout)

    def start_cluster(self, host: Host) -> None:
        host.cluster = QCluster(host.site, Q_CLUSTER_NAME=f"deploy-{host.name}")


def host_env(name: str, database: str) -> dict[str, str]:
    return {
        "EXAMPLE_DB_ENGINE": "postgresql",
        "EXAMPLE_DB_NAME": database,
        "ZERODEPLOY_HOST": name,
        "ZERODEPLOY_LB_CHECK_INTERVAL": str(INTER_MS / 1000),
        "ZERODEPLOY_LB_FALL": str(FALL),
        "ZERODEPLOY_LB_RISE": str(RISE),
    }


def make_fleet(root: Path, names: list[str], env: dict[str, dict[str, str]]) -> Fleet:
    """One origin, one checkout per host, a fresh database (dropped by ``drop_fleet``)."""
    database = f"zd_rollout_{uuid.uuid4().hex[:10]}"
    psql(f"CREATE DATABASE {database}")
    fleet = Fleet(root, database)
    first = make_site(root / names[0], migrate=False)
    for name in names:
        if name == names[0]:
            site = first
        else:
            base = root / name
            base.mkdir()
            server = base / "server"
            git(root, "clone", "-q", str(first.origin), str(server))
            runtime = base / "run"
            runtime.mkdir(mode=0o700)
            site = Site(
                base, first.origin, first.dev, server, runtime, base / "db.sqlite3", base / "static"
            )
        site.extra_env = {**host_env(name, database), **env.get(name, {})}
        fleet.hosts.append(Host(name, site))
    first.manage("migrate", "--noinput")
    for host in fleet.hosts:
        host.site.manage("collectstatic", "--noinput")
    return fleet


def start_fleet(fleet: Fleet) -> None:
    for host in fleet.hosts:
        host.gunicorn = Gunicorn(host.site, workers=2).start()
        fleet.start_cluster(host)
    fleet.haproxy = HAProxy(fleet.root, [(h.name, h.site.port) for h in fleet.hosts]).start()


def stop_fleet(fleet: Fleet) -> None:
    if fleet.haproxy:
        fleet.haproxy.stop()
    for host in fleet.hosts:
        if host.cluster:
            host.cluster.stop()
        if host.gunicorn:
            host.gunicorn.stop()
    with contextlib.suppress(subprocess.CalledProcessError):
        psql(f"DROP DATABASE IF EXISTS {fleet.database} WITH (FORCE)")


class HAProxy:
    """A real HAProxy in its own process group, checking ``GET /healthz/`` on every host."""

    def __init__(self, root: Path, servers: list[tuple[str, int]]) -> None:
        self.port, self.stats_port = free_port(), free_port()
        self.config = root / "haproxy.cfg"
        self.log = root / "haproxy.log"
        lines = [
            "global",
            "    maxconn 256",
            "defaults",
            "    mode http",
            "    timeout connect 2s",
            "    timeout client 30s",
            "    timeout server 30s",
            "    retries 2",
            "    option redispatch",
            "frontend web",
            f"    bind 127.0.0.1:{self.port}",
            "    default_backend app",
            "backend app",
            "    balance roundrobin",
            "    option httpchk GET /healthz/",
            "    http-check expect status 200",
        ]
        lines += [
            f"    server {name} 127.0.0.1:{port} check inter {INTER_MS} fall {FALL} rise {RISE}"
            for name, port in servers
        ]
        lines += [
            "listen stats",
            f"    bind 127.0.0.1:{self.stats_port}",
            "    stats enable",
            "    stats uri /stats",
        ]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HAProxy:
        from tests.support.apt import ensure

        binary = ensure("haproxy", "haproxy")
        subprocess.run([binary, "-c", "-f", str(self.config)], check=True, capture_output=True)
        self.proc = subprocess.Popen(
            [binary, "-db", "-f", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=open(self.log, "ab"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if all(s == "UP" for s in self.statuses().values()):
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"HAProxy servers not UP: {self.statuses()}")

    def statuses(self) -> dict[str, str]:
        """Each server's status as HAProxy's stats CSV shows it (UP, DOWN, UP 1/2, ...)."""
        url = f"http://127.0.0.1:{self.stats_port}/stats;csv"
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
            text = resp.read().decode().lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            r["svname"]: r["status"] for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")
        }

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # by pid: our own process
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class Watcher:
    """Logs HAProxy's status of every server and every host's Gunicorn master pid, so a test
    can tell what the load balancer thought when each master switched."""

    def __init__(self, fleet: Fleet, interval: float = 0.1) -> None:
        self.fleet, self.interval = fleet, interval
        self.rows: list[tuple[float, dict[str, str], dict[str, int | None]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError, ValueError):
                statuses = self.fleet.haproxy.statuses()
                masters = {h.name: _pid(h.site.pidfile) for h in self.fleet.hosts}
                self.rows.append((time.monotonic(), statuses, masters))

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def switches(self) -> list[tuple[str, str]]:
        """(host, HAProxy status) at each moment a host's pidfile named a new master (during a
        USR2 the file is briefly absent: the last pid seen counts)."""
        found, last = [], {}
        for _, statuses, masters in self.rows:
            for name, pid in masters.items():
                if pid is None:
                    continue
                if last.get(name) not in (None, pid):
                    found.append((name, statuses.get(name, "?")))
                last[name] = pid
        return found


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
