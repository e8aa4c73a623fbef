"""/healthz/ through a real Gunicorn serving the example site: SQLite and PostgreSQL, a
database that never answers, unapplied migrations, draining one host of two sharing a database,
a django-q2 cluster's heartbeat, the release a running worker loaded, and a load run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.health.test_healthz import assert_health_json
from tests.support.gunicorn import Gunicorn, connection, free_port, wait_for
from tests.support.site import Site, git, make_site

pytestmark = pytest.mark.integration

TOKEN = "gunicorn-healthz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PG = "host=127.0.0.1 port=5432 user=postgres dbname=test"

MIGRATION_0002 = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [
        migrations.AddField("note", "author", models.CharField(max_length=50, null=True)),
    ]
"""

SETTINGS = '''\
"""Test settings for the example site: PostgreSQL, and unreachable aliases on demand."""

from exampleproject.settings import *  # noqa: F401,F403
from exampleproject.settings import DATABASES, ZERODEPLOY

ZERODEPLOY = {**ZERODEPLOY, "HEALTHZ_CHECK_TIMEOUT": 1.0}
if os.environ.get("HEALTHZ_HUNG_PORT"):
    DATABASES = {
        **DATABASES,
        # accepts TCP connections and never answers
        "hung": {"ENGINE": "django.db.backends.postgresql", "NAME": "none", "USER": "postgres",
                 "HOST": "127.0.0.1", "PORT": os.environ["HEALTHZ_HUNG_PORT"],
                 "OPTIONS": {"connect_timeout": 40}},
        # nothing listens
        "down": {"ENGINE": "django.db.backends.postgresql", "NAME": "none", "USER": "postgres",
                 "HOST": "127.0.0.1", "PORT": os.environ["HEALTHZ_DOWN_PORT"]},
    }
'''


# -- helpers ---------------------------------------------------------------------------------
def request(
    server: Gunicorn,
    path: str = "/healthz/",
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = connection(server.port, server.uds, timeout=60)
    try:
        conn.request(method, path, headers={"Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def probe(server: Gunicorn, **headers: str) -> tuple[int, dict[str, Any]]:
    status, _, body = request(server, headers=headers or None)
    return status, json.loads(body)


def detail(server: Gunicorn) -> tuple[int, dict[str, Any]]:
    status, doc = probe(server, **AUTH)
    assert_health_json(doc, details=True)
    return status, doc


def entries(doc: dict[str, Any], name: str) -> dict[str | None, dict[str, Any]]:
    return {e.get("componentId"): e for e in doc["checks"].get(name, [])}


def every_worker(server: Gunicorn, fetch, samples: int = 16) -> list[Any]:  # noqa: ANN001
    """Enough requests that both sync workers answer some (each request is a new connection)."""
    return [fetch() for _ in range(samples)]


def pg_execute(site: Site, sql: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on the site's PostgreSQL database; returns the rows it returned."""
    dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={site.extra_env['EXAMPLE_DB_NAME']}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class SilentListener:
    """A TCP port that accepts connections and never says a word: a hung database."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def settings_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "settings_mod"
    folder.mkdir()
    (folder / "healthz_site_settings.py").write_text(SETTINGS)
    return folder


@pytest.fixture
def pg_site(site: Site, settings_dir: Path):
    """The site on a fresh PostgreSQL database (dropped at teardown, after Gunicorn stops:
    request this fixture before gunicorn_factory)."""
    name = f"zd_healthz_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    site.extra_env.update(
        EXAMPLE_DB_ENGINE="postgresql",
        EXAMPLE_DB_NAME=name,
        DJANGO_SETTINGS_MODULE="healthz_site_settings",
        PYTHONPATH=str(settings_dir),
        ZERODEPLOY_HEALTHZ_TOKEN=TOKEN,
    )
    site.manage("migrate", "--noinput")
    yield site
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- SQLite ------------------------------------------------------------------------------------
def test_probe_format_access_host_head_and_load_without_writes(
    site, gunicorn_factory, load_factory
):
    server = gunicorn_factory(env={"ZERODEPLOY_HEALTHZ_TOKEN": TOKEN})
    status, headers, body = request(server)
    assert status == 200
    assert headers["content-type"] == "application/health+json"
    assert headers["cache-control"] == "no-store"
    assert "set-cookie" not in headers
    anonymous = json.loads(body)
    assert_health_json(anonymous, details=False)
    assert anonymous == {"status": anonymous["status"], "releaseId": site.server_head()}

    status, doc = detail(server)
    assert status == 200
    assert entries(doc, "database:responseTime")["default"]["status"] == "pass"
    assert set(entries(doc, "cache:responseTime")) == {"default", "qcluster"}
    assert entries(doc, "migrations:unapplied")["default"]["observedValue"] == 0
    # no qcluster runs: the non-critical heartbeat check warns, the instance still takes traffic
    assert entries(doc, "django-q:clusters")[None]["status"] == "warn"
    assert doc["status"] == "warn"
    assert doc["pid"] in server.worker_pids()

    for wrong in ({"Authorization": "Bearer nope"}, {"Authorization": TOKEN}, {}):
        assert set(probe(server, **wrong)[1]) == {"status", "releaseId"}

    # a load balancer's Host is the instance IP: answered on health paths only
    ip = {"Host": "10.0.0.5"}
    assert request(server, headers=ip)[0] == 200
    assert request(server, "/healthz/live/", headers=ip)[0] == 200
    assert request(server, "/", headers=ip)[0] == 400
    assert request(server, "/notes/", headers=ip)[0] == 400

    status, headers, body = request(server, method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["content-length"]) == len(json.dumps(anonymous, separators=(",", ":")))

    # a load of probes: zero failures, no database write, no cookie
    db_before = sha256(site.db_path)
    with load_factory(port=server.port, path="/healthz/", clients=4, max_seconds=60) as load:
        with load.operation():
            time.sleep(3)
    report = load.report
    report.assert_covered()
    assert report.total > 20 and report.failed == 0, report.summary()
    assert sha256(site.db_path) == db_before
    assert "set-cookie" not in request(server)[1]


def test_release_id_is_what_the_running_worker_loaded(site, gunicorn_factory):
    server = gunicorn_factory()
    booted = site.server_head()
    new = site.commit_release("v2")
    git(site.server, "pull", "-q")
    assert site.server_head() == new != booted
    releases = every_worker(server, lambda: probe(server)[1]["releaseId"])
    assert set(releases) == {booted}
    live = every_worker(server, lambda: json.loads(request(server, "/healthz/live/")[2]))
    assert {doc["releaseId"] for doc in live} == {booted}
    # a process started now loads the new checkout, and says so
    fresh = site.manage("healthz", "--json", check=False)
    assert json.loads(fresh.stdout)["releaseId"] == new


def test_drain_takes_only_this_host_out(site, gunicorn_factory, load_factory, tmp_path):
    host_a = gunicorn_factory()
    # a second host: its own checkout and runtime directory, the same database
    other = make_site(tmp_path / "host-b", migrate=False)
    other.db_path = site.db_path
    host_b = Gunicorn(other)
    try:
        host_b.start()
        assert request(host_a)[0] == request(host_b)[0] == 200
        drained = site.manage("healthz", "--drain", "--reason", "kernel upgrade")
        assert "Draining" in drained.stdout
        with load_factory(port=host_a.port, path="/", clients=2, max_seconds=120) as load:
            with load.operation():
                assert wait_for(
                    lambda: all(
                        s == 503 for s in every_worker(host_a, lambda: request(host_a)[0], 6)
                    )
                )
                assert every_worker(host_a, lambda: probe(host_a), 4)[0][1] == {
                    "status": "fail",
                    "releaseId": site.server_head(),
                }
                assert request(host_a, "/healthz/live/")[0] == 200
                assert {request(host_b)[0] for _ in range(6)} == {200}
        # draining only changes the answer to the load balancer: the site still serves
        load.report.assert_covered()
        assert load.report.failed == 0, load.report.summary()
        code = site.manage("healthz", check=False).returncode
        assert code == 1  # the command reports the drained host as failing
        site.manage("healthz", "--resume")
        assert wait_for(
            lambda: all(s == 200 for s in every_worker(host_a, lambda: request(host_a)[0], 6))
        )
    finally:
        host_b.stop()


def test_django_q_cluster_heartbeat_is_a_non_critical_check(site, gunicorn_factory):
    server = gunicorn_factory(env={"ZERODEPLOY_HEALTHZ_TOKEN": TOKEN})
    status, doc = detail(server)
    assert status == 200 and doc["status"] == "warn"
    assert entries(doc, "django-q:clusters")[None]["output"].startswith("no heartbeat")
    qcluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=site.server,
        env=site.env(),
        stdin=subprocess.DEVNULL,
        stdout=open(site.root / "qcluster.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def cluster_seen() -> dict[str, Any] | None:
            _, now = detail(server)
            item = entries(now, "django-q:clusters")[None]
            return now if item["status"] == "pass" else None

        seen = wait_for(cluster_seen, timeout=60, interval=0.5)
        assert seen, (site.root / "qcluster.log").read_text()[-3000:]
        assert entries(seen, "django-q:clusters")[None]["observedValue"] >= 1
        assert seen["status"] == "pass"
    finally:
        qcluster.send_signal(signal.SIGTERM)  # its main pid only (see FIELD_NOTES)
        try:
            qcluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            qcluster.kill()
            qcluster.wait(timeout=10)


# -- PostgreSQL ----------------------------------------------------------------------------------
def test_postgresql_round_trip_and_migrations_of_the_code_each_worker_runs(
    pg_site, gunicorn_factory, load_factory
):
    site = pg_site
    server = gunicorn_factory()
    status, doc = detail(server)
    assert status == 200
    db = entries(doc, "database:responseTime")["default"]
    assert db["status"] == "pass" and db["observedValue"] > 0
    with load_factory(port=server.port, path="/healthz/", clients=4, max_seconds=60) as load:
        with load.operation():
            time.sleep(2)
    load.report.assert_covered()
    assert load.report.total > 10 and load.report.failed == 0, load.report.summary()

    # the checkout moves to a release with a new migration, not applied yet, and a migration
    # of the loaded code is marked unapplied: within the 30 s a passing result is reused the
    # workers still answer 200; after it they fail on the loaded code's migration only (the
    # running workers judge the code they loaded, never the checkout)
    assert {request(server)[0] for _ in range(8)} == {200}  # both workers: a fresh pass
    site.commit_release("v2", {"notes/migrations/0002_note_author.py": MIGRATION_0002})
    git(site.server, "pull", "-q")
    unapplied = pg_execute(
        site,
        "DELETE FROM django_migrations WHERE app = 'notes' AND name = '0001_initial'"
        " RETURNING app, name, applied",
    )
    assert {request(server)[0] for _ in range(8)} == {200}, "the passing result was not reused"
    assert wait_for(lambda: {request(server)[0] for _ in range(8)} == {503}, timeout=90)
    migrations = entries(detail(server)[1], "migrations:unapplied")["default"]
    assert migrations["status"] == "fail" and migrations["observedValue"] == 1, migrations
    assert "notes.0001_initial" in migrations["output"] and "0002" not in migrations["output"]
    pg_execute(
        site, "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, %s)", unapplied[0]
    )
    # a failing result is not reused: the next round after HEALTHZ_CACHE_SECONDS passes again
    assert wait_for(lambda: {request(server)[0] for _ in range(8)} == {200}, timeout=30)

    # workers that load the new code see the unapplied migration and refuse traffic
    server.stop()
    server = gunicorn_factory()
    status, anonymous = probe(server)
    assert status == 503 and anonymous == {"status": "fail", "releaseId": site.server_head()}
    _, doc = detail(server)
    migrations = entries(doc, "migrations:unapplied")["default"]
    assert migrations["status"] == "fail" and migrations["observedValue"] == 1
    assert "notes.0002_note_author" in migrations["output"]
    assert request(server, "/healthz/live/")[0] == 200

    site.manage("migrate", "--noinput")
    assert wait_for(lambda: all(request(server)[0] == 200 for _ in range(6)), timeout=30)


def test_unreachable_databases_answer_503_within_the_timeout(pg_site, gunicorn_factory):
    hung = SilentListener()
    try:
        server = gunicorn_factory(
            env={"HEALTHZ_HUNG_PORT": str(hung.port), "HEALTHZ_DOWN_PORT": str(free_port())}
        )
        started = time.monotonic()
        status, headers, body = request(server)
        elapsed = time.monotonic() - started
        assert status == 503
        assert elapsed < 30, elapsed  # the check timeout (1 s), not connect_timeout (40 s)
        text = body.decode()
        assert json.loads(text) == {"status": "fail", "releaseId": pg_site.server_head()}
        for leak in ("OperationalError", "127.0.0.1", str(hung.port), "timeout"):
            assert leak not in text
        assert hung.accepted  # the worker did connect, and got no answer

        status, doc = detail(server)
        assert status == 503
        dbs = entries(doc, "database:responseTime")
        assert dbs["default"]["status"] == "pass"
        assert dbs["hung"]["status"] == "fail"
        assert dbs["hung"]["output"].startswith(("did not answer within 1 s", "still running"))
        assert dbs["down"]["status"] == "fail" and "OperationalError" in dbs["down"]["output"]
        # probes keep answering promptly while the hung connection attempt is still stuck
        for _ in range(6):
            assert request(server)[0] == 503
        # the reason is in the server's log, with the exception
        assert (
            "health check database:responseTime[down]: fail: OperationalError" in server.log_text()
        )
    finally:
        hung.close()


def test_site_settings_module_is_valid(pg_site):
    result = pg_site.manage("check", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
