"""A real ``qcluster`` (ORM broker, the site's own file database) runs a deploy started from the
admin of the example site, served by a real Gunicorn under load.

The admin is driven over HTTP like a browser would (login, CSRF token, the confirmation page),
then the detail page's JSON is polled until the deploy finishes. The helpers here are reused by
``test_browser.py``.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.support.gunicorn import wait_for
from tests.support.site import Site

pytestmark = pytest.mark.integration

ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-password"
PROGRESS = "/admin/django_zerodeploy/deployment/{}/progress/"


# -- helpers (shared with test_browser.py) ------------------------------------------------------
class QCluster:
    """``manage.py qcluster`` of the server clone, in its own process group; stopped by SIGTERM
    to its main pid only (signalling the whole group was seen to hang, FIELD_NOTES)."""

    def __init__(self, site: Site, **env: str) -> None:
        self.site = site
        self.log = site.root / "qcluster.log"
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=site.server,
            env=site.env(**env),
            stdin=subprocess.DEVNULL,
            stdout=open(self.log, "ab"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 90) -> int | None:
        self.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # last resort, our own group only
            return self.proc.wait(10)

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-6000:]
        return ""


@pytest.fixture
def qcluster_factory():
    started: list[QCluster] = []

    def start(site: Site, **env: str) -> QCluster:
        cluster = QCluster(site, **env)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


def create_superuser(site: Site) -> None:
    site.manage("createsuperuser", "--noinput", "--username", ADMIN_USER, "--email", "admin@example.com",
                DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD)


class AdminSession:
    """A logged-in admin session over real HTTP (cookies, CSRF), like a browser's."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def request(self, path: str, data: dict | None = None, timeout: float = 120) -> tuple[int, dict, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body)
        try:
            with self.opener.open(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode(errors="replace")

    def csrf(self, page: str) -> str:
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    def login(self, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> None:
        _, _, page = self.request("/admin/login/")
        status, headers, _ = self.request(
            "/admin/login/?next=/admin/",
            {"csrfmiddlewaretoken": self.csrf(page), "username": username, "password": password},
        )
        assert status == 302, "login failed"

    def start_deploy(self, ref: str = "") -> tuple[int, str]:
        """Open the confirmation page, confirm; returns (deployment id, the page's plan HTML)."""
        status, _, page = self.request("/admin/django_zerodeploy/deployment/deploy/?" + urllib.parse.urlencode({"ref": ref}))
        assert status == 200, page[-2000:]
        status, headers, body = self.request(
            "/admin/django_zerodeploy/deployment/deploy/",
            {"csrfmiddlewaretoken": self.csrf(page), "ref": ref},
        )
        assert status == 302, body[-2000:]
        deployment_id = int(re.search(r"/deployment/(\d+)/change/", headers["Location"]).group(1))
        return deployment_id, page

    def progress(self, deployment_id: int) -> dict:
        status, _, body = self.request(PROGRESS.format(deployment_id), timeout=30)
        assert status == 200, body[-2000:]
        return json.loads(body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return None


def wait_finished(session: AdminSession, deployment_id: int, timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        data = session.progress(deployment_id)
        if not seen or seen[-1] != data["status"]:
            seen.append(data["status"])
        if data["finished"]:
            data["seen"] = seen
            return data
        time.sleep(0.3)
    raise AssertionError(f"deploy #{deployment_id} did not finish in {timeout} s: {seen}")


def db_rows(site: Site, sql: str, *params: object) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(site.db_path, timeout=20)) as conn:
        return conn.execute(sql, params).fetchall()


def cluster_banner(session: AdminSession) -> str:
    _, _, page = session.request("/admin/django_zerodeploy/deployment/")
    match = re.search(r'data-zd-cluster="(\w+)"', page)
    return match.group(1) if match else "?"


def details(site: Site, cluster: QCluster, deployment_id: int) -> str:
    rows = db_rows(site, "SELECT name, status, detail, output FROM django_zerodeploy_deploymentstep "
                         "WHERE deployment_id = ? ORDER BY position", deployment_id)
    steps = "\n".join(f"{n} {s}: {d}\n{o[-1500:]}" for n, s, d, o in rows)
    return f"--- steps\n{steps}\n--- qcluster log\n{cluster.log_text()}"


# -- the tests ----------------------------------------------------------------------------------
def test_admin_deploy_runs_in_a_real_qcluster_under_load(site, gunicorn_factory, load_factory, qcluster_factory):
    v2 = site.commit_release("v2", message="Release v2 from the admin")
    server = gunicorn_factory(workers=2)
    assert server.served_release() == "v1"
    create_superuser(site)
    admin = AdminSession(server.port)
    admin.login()
    # no cluster yet: the admin says so, and a deploy would stay queued
    assert cluster_banner(admin) == "down"

    cluster = qcluster_factory(site)
    assert wait_for(lambda: cluster_banner(admin) == "running", timeout=60), cluster.log_text()

    load = load_factory(port=server.port, clients=3, max_seconds=240, timeout=30).start()
    time.sleep(0.5)
    try:
        deployment_id, plan_page = admin.start_deploy()
        # the confirmation page showed the dry-run plan of this very release
        assert "Dry run: nothing was changed." in plan_page
        assert v2[:10] in plan_page and "Release v2 from the admin" in plan_page
        queued = db_rows(site, "SELECT status, trigger, username, task_id FROM django_zerodeploy_deployment WHERE id = ?",
                         deployment_id)[0]
        assert queued[1:3] == ("admin", ADMIN_USER) and queued[3]
        result = wait_finished(admin, deployment_id)
        time.sleep(0.5)
    finally:
        report = load.stop()

    assert result["status"] == "succeeded", details(site, cluster, deployment_id)
    assert result["target_sha"] == v2 and result["subject"] == "Release v2 from the admin"
    assert "queued" in result["seen"][:1] or "running" in result["seen"][:1]
    assert [s["status"] for s in result["steps"] if s["name"] in ("checkout", "reload", "verify")] == ["ok"] * 3
    assert report.failed == 0, report.summary()
    assert report.markers["v1"] > 0 and report.last_marker == "v2", report.summary()
    assert server.served_releases() == {"v2"}
    assert server.healthz()["releaseId"] == v2
    assert site.server_head() == v2 and site.server_branch() == "main"
    # exactly one run: one record, the task acknowledged (off the queue) and its result saved
    assert db_rows(site, "SELECT count(*) FROM django_zerodeploy_deployment")[0][0] == 1
    assert db_rows(site, "SELECT count(*) FROM django_q_ormq")[0][0] == 0
    assert db_rows(site, "SELECT count(*) FROM django_q_task WHERE success = 1 AND name = ?",
                   f"deploy-{deployment_id}")[0][0] == 1
    # the cluster stops cleanly; then the admin says no cluster runs
    assert cluster.stop() == 0
    assert wait_for(lambda: cluster_banner(admin) == "down", timeout=30)


def test_cluster_stopped_during_a_deploy_finishes_it_first(site, gunicorn_factory, load_factory, qcluster_factory):
    """What ``systemctl restart --no-block`` with ``KillMode=mixed`` does to the cluster that
    runs the deploy: SIGTERM to its main process only. django-q2 then stops gracefully: the
    worker finishes the running task (the whole deploy, recorded) before the cluster exits."""
    v2 = site.commit_release("v2")
    server = gunicorn_factory(workers=2)
    create_superuser(site)
    admin = AdminSession(server.port)
    admin.login()
    cluster = qcluster_factory(site)
    assert wait_for(lambda: cluster_banner(admin) == "running", timeout=60), cluster.log_text()

    load = load_factory(port=server.port, clients=2, max_seconds=240, timeout=30).start()
    try:
        deployment_id, _ = admin.start_deploy()
        assert wait_for(lambda: admin.progress(deployment_id)["status"] == "running", timeout=120, interval=0.05)
        cluster.terminate()
        assert not admin.progress(deployment_id)["finished"]  # the stop was asked mid-deploy
        exit_code = cluster.proc.wait(timeout=420)
        result = admin.progress(deployment_id)
        time.sleep(0.3)
    finally:
        report = load.stop()

    assert exit_code == 0, cluster.log_text()
    assert result["status"] == "succeeded", details(site, cluster, deployment_id)
    assert result["target_sha"] == v2
    assert report.failed == 0, report.summary()
    assert server.served_releases() == {"v2"}
    # the worker's result reached the database before the cluster exited; nothing is left queued
    assert db_rows(site, "SELECT count(*) FROM django_q_task WHERE success = 1 AND name = ?",
                   f"deploy-{deployment_id}")[0][0] == 1
    assert db_rows(site, "SELECT count(*) FROM django_q_ormq")[0][0] == 0


def test_a_deploy_queued_without_a_cluster_waits_and_runs_when_one_starts(site, gunicorn_factory, qcluster_factory):
    """Never silently lost: the record stays queued (the page says why) until a cluster runs."""
    v2 = site.commit_release("v2")
    server = gunicorn_factory(workers=2)
    create_superuser(site)
    admin = AdminSession(server.port)
    admin.login()
    deployment_id, _ = admin.start_deploy()
    _, _, detail = admin.request(f"/admin/django_zerodeploy/deployment/{deployment_id}/change/")
    assert 'data-zd-cluster="down"' in detail and "stay queued" in detail
    time.sleep(2)
    assert admin.progress(deployment_id)["status"] == "queued"
    cluster = qcluster_factory(site)
    result = wait_finished(admin, deployment_id)
    assert result["status"] == "succeeded", details(site, cluster, deployment_id)
    assert result["target_sha"] == v2 and server.served_releases() == {"v2"}
