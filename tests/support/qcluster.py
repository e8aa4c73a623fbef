"""A real django-q2 cluster for the example site, and a logged-in admin session over HTTP,
shared by the qcluster, webhook and browser tests."""

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

from tests.support.site import Site

ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-password"
PROGRESS = "/admin/django_zerodeploy/deployment/{}/progress/"


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


def create_superuser(site: Site) -> None:
    site.manage(
        "createsuperuser",
        "--noinput",
        "--username",
        ADMIN_USER,
        "--email",
        "admin@example.com",
        DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
    )


class AdminSession:
    """A logged-in admin session over real HTTP (cookies, CSRF), like a browser's."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def request(
        self, path: str, data: dict | None = None, timeout: float = 120
    ) -> tuple[int, dict, str]:
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
        status, _, page = self.request(
            "/admin/django_zerodeploy/deployment/deploy/?" + urllib.parse.urlencode({"ref": ref})
        )
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
    rows = db_rows(
        site,
        "SELECT name, status, detail, output FROM django_zerodeploy_deploymentstep "
        "WHERE deployment_id = ? ORDER BY position",
        deployment_id,
    )
    steps = "\n".join(f"{n} {s}: {d}\n{o[-1500:]}" for n, s, d, o in rows)
    return f"--- steps\n{steps}\n--- qcluster log\n{cluster.log_text()}"
