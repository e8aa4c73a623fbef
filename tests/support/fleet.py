"""Several hosts of one site on loopback, sharing one PostgreSQL database, behind a real
HAProxy: each host its own checkout (cloned from one origin), runtime directory, Gunicorn port
and qcluster (``Q_CLUSTER_NAME=deploy-<host>``).

The broker is django-q2's ORM broker on that database, or (``broker="redis"``) the Redis
server on 127.0.0.1:6379, in a database number this run claims and empties afterwards.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.gunicorn import Gunicorn, free_port, wait_for
from tests.support.qcluster import QCluster
from tests.support.site import Site, git, make_site

# HAProxy's check timing, and the same values in each host's settings (the drain formula)
INTER_MS, FALL, RISE = 500, 2, 2
BROKERS = ("orm", "redis")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_CLAIM = "zerodeploy-tests:claimed-by"  # marks a Redis database number as one run's


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
    redis_db: int | None = None  # the Redis broker's database number, when it is used
    owner: str = ""

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def coordinator(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``manage.py deploy ARGS`` on the first host, as an operator would run it."""
        return self.hosts[0].site.manage("deploy", *args, check=False, timeout=timeout)

    def start_cluster(self, host: Host) -> None:
        host.cluster = QCluster(host.site, Q_CLUSTER_NAME=f"deploy-{host.name}")


def claim_redis_db(owner: str) -> int:
    """An empty Redis database number (1-15; 0 is left to others), marked as ``owner``'s so
    that concurrent runs never share one."""
    import redis

    for number in range(1, 16):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number)
        if client.set(REDIS_CLAIM, owner, nx=True, ex=7200):
            if client.dbsize() == 1:
                return number
            client.delete(REDIS_CLAIM)  # someone else's keys live there
    raise RuntimeError(f"no empty Redis database on {REDIS_HOST}:{REDIS_PORT}")


def release_redis_db(number: int, owner: str) -> list[str]:
    """Delete every key this run left in its database (the queues, the cluster stats) and
    the claim; returns the keys that were left, for the test to look at."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number)
    if client.get(REDIS_CLAIM) != owner.encode():
        return []
    left = [k.decode() for k in client.scan_iter("django_q:*")]
    if left:
        client.delete(*left)
    client.delete(REDIS_CLAIM)
    return left


def host_env(name: str, database: str, redis_db: int | None = None) -> dict[str, str]:
    broker = {}
    if redis_db is not None:
        broker["EXAMPLE_Q_REDIS"] = f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"
    return {
        **broker,
        "EXAMPLE_DB_ENGINE": "postgresql",
        "EXAMPLE_DB_NAME": database,
        "ZERODEPLOY_HOST": name,
        "ZERODEPLOY_LB_CHECK_INTERVAL": str(INTER_MS / 1000),
        "ZERODEPLOY_LB_FALL": str(FALL),
        "ZERODEPLOY_LB_RISE": str(RISE),
    }


def make_fleet(
    root: Path, names: list[str], env: dict[str, dict[str, str]], broker: str = "orm"
) -> Fleet:
    """One origin, one checkout per host, a fresh database (dropped by ``stop_fleet``) and,
    with ``broker="redis"``, a Redis database of its own (emptied by ``stop_fleet``)."""
    if broker not in BROKERS:
        raise ValueError(broker)
    run = uuid.uuid4().hex[:10]
    database = f"zd_rollout_{run}"
    psql(f"CREATE DATABASE {database}")
    fleet = Fleet(root, database, owner=run)
    if broker == "redis":
        fleet.redis_db = claim_redis_db(run)
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
        site.extra_env = {**host_env(name, database, fleet.redis_db), **env.get(name, {})}
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
    if fleet.redis_db is not None:
        release_redis_db(fleet.redis_db, fleet.owner)


def registered(fleet: Fleet) -> list[str]:
    """The hosts ``deploy --hosts --list`` shows with a live heartbeat."""
    result = fleet.coordinator("--hosts", "--list", "--json")
    if result.returncode:
        return []
    return [h["name"] for h in json.loads(result.stdout) if h["alive"]]


@contextlib.contextmanager
def running_fleet(
    root: Path, names: list[str], env: dict[str, dict[str, str]], broker: str = "orm"
) -> Iterator[Fleet]:
    """A started fleet whose every host registered, stopped and cleaned up afterwards."""
    made = make_fleet(root, names, env, broker)
    try:
        start_fleet(made)
        listed = wait_for(lambda: registered(made) == names, timeout=90)
        assert listed, [h.cluster.log_text() for h in made.hosts]
        yield made
    finally:
        stop_fleet(made)


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


def releases(fleet: Fleet) -> dict[str, str]:
    """The ``releaseId`` each host's own Gunicorn reports."""
    return {h.name: h.gunicorn.healthz()["releaseId"] for h in fleet.hosts}


def rollout_under_load(fleet: Fleet, *args: str):  # noqa: ANN201 - (result, report, watcher)
    """``deploy --hosts ARGS`` on web1 under load through HAProxy, logging HAProxy and the
    masters; 0 failed requests and every phase covered."""
    from tests.support.load import LoadGenerator

    load = LoadGenerator(port=fleet.haproxy.port, clients=3, max_seconds=480, timeout=30).start()
    try:
        with Watcher(fleet) as watcher, load.operation():
            result = fleet.coordinator("--hosts", *args)
    finally:
        report = load.stop()
    report.assert_covered()
    assert report.failed == 0, report.summary() + result.stdout + result.stderr
    return result, report, watcher


def good_rollout(fleet: Fleet, marker: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Commit release ``marker``, roll it out with ``args``: every host serves it afterwards,
    and HAProxy had each host out of rotation when its master switched."""
    target = fleet.hosts[0].site.commit_release(marker)
    result, report, watcher = rollout_under_load(fleet, "all", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    names = [h.name for h in fleet.hosts]
    assert releases(fleet) == dict.fromkeys(names, target)
    assert report.last_marker == marker
    switches = watcher.switches()
    assert sorted(name for name, _ in switches) == names, switches
    assert all(status.startswith(("DOWN", "MAINT")) for _, status in switches), switches
    return result


def listed_releases(fleet: Fleet, timeout: float = 30) -> dict[str, dict]:
    """``deploy --hosts --list --json`` once every host's heartbeat records the release its
    Gunicorn serves (they beat every 5 s)."""
    want = releases(fleet)

    def listed() -> dict[str, dict] | None:
        result = fleet.coordinator("--hosts", "--list", "--json")
        rows = {h["name"]: h for h in json.loads(result.stdout)} if not result.returncode else {}
        ok = all(rows.get(n, {}).get("release") == r for n, r in want.items())
        return rows if ok else None

    rows = wait_for(listed, timeout=timeout)
    assert rows, (want, fleet.coordinator("--hosts", "--list").stdout)
    return rows
