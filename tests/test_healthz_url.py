"""HEALTHZ_URL through a Unix socket, and the verify step without HEALTHZ_URL asking the socket
Gunicorn itself binds: a real Gunicorn on ``--bind unix:...``, deploys under load through it."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from django_zerodeploy import healthz_url
from tests.deploy.test_deploy import deploy, show, step

BINDS = [
    ("unix:/run/gunicorn.sock", "unix:/run/gunicorn.sock:/healthz/"),
    ("unix:gunicorn.sock", "unix:/srv/site/gunicorn.sock:/healthz/"),
    ("127.0.0.1:8000", "http://127.0.0.1:8000/healthz/"),
    ("0.0.0.0:8001", "http://127.0.0.1:8001/healthz/"),
    ("[::]:8002", "http://[::1]:8002/healthz/"),
    ("localhost", "http://localhost:8000/healthz/"),
    ("fd://3", None),
]


@pytest.mark.parametrize(("bind", "url"), BINDS)
def test_a_gunicorn_bind_becomes_the_url_to_poll(bind, url):
    assert healthz_url.url_for_bind(bind, "/healthz/", cwd="/srv/site") == url
    if url:
        assert healthz_url.problem(url) is None


def test_a_unix_url_is_requested_through_the_socket(tmp_path):
    """A real AF_UNIX server: the request line and the answer go through the socket file."""
    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    seen: list[bytes] = []

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            seen.append(conn.recv(4096))
            body = json.dumps({"releaseId": "abc"}).encode()
            conn.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        status, body = healthz_url.get(f"unix:{path}:/healthz/?x=1", timeout=5)
    finally:
        thread.join(5)
        server.close()
    assert status == 503 and json.loads(body) == {"releaseId": "abc"}
    assert seen[0].startswith(b"GET /healthz/?x=1 HTTP/1.1\r\n")


def test_an_absent_socket_is_an_oserror(tmp_path):
    with pytest.raises(OSError):
        healthz_url.get(f"unix:{tmp_path}/none.sock:/healthz/", timeout=2)


def _answer_once(path, body: bytes) -> threading.Thread:
    """A real AF_UNIX server that answers one request with a 503 and ``body``."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("body", "release"),
    [
        (b'{"releaseId": "abc", "status": "draining"}', "abc"),  # a 503 still names it
        (b'{"releaseId": ""}', None),
        (b'{"releaseId": 7}', None),
        (b"[1, 2]", None),
        (b"<html>not json</html>", None),
    ],
)
def test_release_id_reads_the_release_a_health_url_reports(tmp_path, body, release):
    path = tmp_path / "h.sock"
    thread = _answer_once(path, body)
    try:
        assert healthz_url.release_id(f"unix:{path}:/healthz/", timeout=5) == release
    finally:
        thread.join(5)


def test_release_id_of_an_unreachable_or_bad_url_is_none(tmp_path):
    assert healthz_url.release_id(f"unix:{tmp_path}/none.sock:/healthz/", timeout=2) is None
    assert healthz_url.release_id("ftp://example.invalid/healthz/", timeout=2) is None


def _deploy_under_socket_load(site, server, load_factory, **env):
    load = load_factory(uds=server.uds, clients=3, max_seconds=240, timeout=30).start()
    time.sleep(0.3)
    try:
        result = deploy(site, "--json", **env)
        time.sleep(0.3)
    finally:
        report = load.stop()
    assert report.total > 0 and not report.cut_short, "the load did not cover the deploy"
    ended = max(h.started for h in report.hits)
    return result, report, ended


@pytest.mark.integration
@pytest.mark.parametrize("configured", [True, False], ids=["healthz-url-unix", "gunicorn-bind"])
def test_deploy_verifies_through_the_unix_socket(site, gunicorn_factory, load_factory, configured):
    server = gunicorn_factory(uds=True, workers=2)
    v2 = site.commit_release("v2")
    url = f"unix:{server.uds}:/healthz/"
    env = {"ZERODEPLOY_HEALTHZ_URL": url if configured else ""}
    result, report, _ = _deploy_under_socket_load(site, server, load_factory, **env)
    assert result.returncode == 0, show(result)
    assert report.failed == 0, report.summary()
    assert report.last_marker == "v2", report.summary()
    verify = step(json.loads(result.stdout), "verify")
    source = "" if configured else " (Gunicorn's bind)"
    assert verify["status"] == "ok", verify
    assert f"{url}{source} reports releaseId '{v2}'" in verify["detail"]
    assert server.served_releases() == {"v2"}
