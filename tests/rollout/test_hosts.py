"""The host registry records the release a host's Gunicorn serves, read from its own
HEALTHZ_URL (``releaseId``), and falls back to the checkout's commit, marked, when that URL is
unset, refuses, hangs or answers without a releaseId.

A real HTTP server on loopback stands in for the host's Gunicorn (it answers as /healthz/
does); nothing of the HTTP client is mocked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.test import override_settings

from django_zerodeploy.models import Host
from django_zerodeploy.rollout.hosts import (
    hosts_table,
    local_release,
    register,
    registered_hosts,
    served_release,
)
from tests.support.gunicorn import free_port

SERVED = "c0ffee" + "1" * 34
RELEASE_GONE = threading.Event()  # set at teardown: the hanging handler returns


class Healthz(BaseHTTPRequestHandler):
    """/ok/ 200, /drained/ 503 (both with a releaseId), /bare/ without one, /hang/ never."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/hang/":
            RELEASE_GONE.wait(30)
            return
        status = 503 if self.path == "/drained/" else 200
        body: dict[str, str] = {"status": "fail" if status == 503 else "pass"}
        if self.path != "/bare/":
            body["releaseId"] = SERVED
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/health+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def healthz() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    RELEASE_GONE.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        RELEASE_GONE.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_release_is_what_healthz_reports_even_while_drained(healthz):
    assert served_release(f"{healthz}/ok/").release == SERVED
    drained = served_release(f"{healthz}/drained/")
    assert drained.release == SERVED and not drained.from_checkout


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        pytest.param("/bare/", "answered 200 without a releaseId", id="no-release-id"),
        pytest.param("/hang/", "timed out", id="hangs"),
    ],
)
def test_a_healthz_without_a_release_keeps_the_checkout_and_says_why(healthz, path, problem):
    served = served_release(f"{healthz}{path}", timeout=0.5)
    assert served.from_checkout and served.release == local_release()
    assert problem in served.problem and healthz in served.problem


def test_a_refused_connection_or_no_url_keeps_the_checkout():
    refused = served_release(f"http://127.0.0.1:{free_port()}/healthz/")
    assert refused.from_checkout and "ConnectionRefusedError" in refused.problem
    with override_settings(ZERODEPLOY={"HOST": "web1"}):
        assert served_release().problem == "no HEALTHZ_URL"


@pytest.mark.django_db
def test_the_heartbeat_records_the_served_release_and_list_says_where_it_came_from(healthz, capsys):
    with override_settings(ZERODEPLOY={"HOST": "web1", "HEALTHZ_URL": f"{healthz}/ok/"}):
        register()
    down = f"http://127.0.0.1:{free_port()}/healthz/"
    with override_settings(ZERODEPLOY={"HOST": "web2", "HEALTHZ_URL": down}):
        register()
    web1, web2 = Host.objects.get(name="web1"), Host.objects.get(name="web2")
    assert (web1.release, web1.release_from_checkout, web1.release_problem) == (SERVED, False, "")
    assert web2.release == local_release()[:40] and web2.release_from_checkout
    assert down in web2.release_problem

    table = hosts_table(registered_hosts())
    assert f"web1                 {SERVED[:10]} " in table
    assert f"web2                 {(local_release()[:10] or '?') + '*'}" in table
    assert "* web2: its checkout's commit, not read from what it serves" in table
    assert "* web1" not in table

    call_command("deploy", "--hosts", "--list", "--json")
    listed = {h["name"]: h for h in json.loads(capsys.readouterr().out)}
    assert listed["web1"]["release"] == SERVED and not listed["web1"]["release_from_checkout"]
    assert listed["web2"]["release_from_checkout"] and down in listed["web2"]["release_problem"]
