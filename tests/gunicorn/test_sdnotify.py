"""The systemd notification that lets a USR2 work under systemd (Gunicorn #2856), checked
byte for byte on a real Unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from django_zerodeploy.gunicorn import readiness, sdnotify


@pytest.fixture
def notify_socket(tmp_path: Path):  # noqa: ANN201
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


def test_notify_sends_one_exact_datagram(notify_socket):
    path, sock = notify_socket
    assert sdnotify.notify("READY=1\nSTATUS=hello", {"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=hello"


def test_notify_reaches_an_abstract_socket():
    name = f"zerodeploy-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert sdnotify.notify("MAINPID=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"MAINPID=1"


def test_notify_without_a_socket_is_a_quiet_no(tmp_path):
    assert sdnotify.notify("READY=1", {}) is False
    assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}) is False


def test_the_announcement_text():
    assert sdnotify.main_pid_message(4321, 3) == (
        "MAINPID=4321\nREADY=1\nSTATUS=Gunicorn master 4321 ready with 3 workers (django-zerodeploy)"
    )


@pytest.fixture
def workers(settings, tmp_path):  # noqa: ANN001, ANN201
    """Two child processes of this test standing in for a re-executed master's workers."""
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "run")}
    procs = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)
    ]
    yield [p.pid for p in procs]
    for proc in procs:
        proc.kill()
        proc.wait()


def _ready(pid: int) -> None:
    readiness.write_report(readiness.WorkerReport(pid, os.getpid(), "abc", time.time(), True))


def test_the_last_worker_of_a_reexecuted_master_announces_it_once(
    workers, notify_socket, monkeypatch
):
    path, sock = notify_socket
    master = os.getpid()
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("GUNICORN_PID", "1")  # this "master" was started by a USR2
    _ready(workers[0])
    assert sdnotify.announce_if_generation_ready(master, expected=2) is None  # 1/2 ready
    _ready(workers[1])
    message = sdnotify.announce_if_generation_ready(master, expected=2)
    assert (
        message
        == f"MAINPID={master}\nREADY=1\nSTATUS=Gunicorn master {master} ready with 2 workers (django-zerodeploy)"
    )
    assert sock.recv(4096) == message.encode()
    assert readiness.announced(master) == message
    assert sdnotify.announce_if_generation_ready(master, expected=2) is None  # once only
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


def test_no_announcement_outside_systemd_or_for_a_first_master(workers, notify_socket, monkeypatch):
    path, sock = notify_socket
    for pid in workers:
        _ready(pid)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("GUNICORN_PID", "1")
    assert sdnotify.announce_if_generation_ready(os.getpid(), expected=2) is None
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("GUNICORN_PID")  # systemd started this master: it is MainPID already
    assert sdnotify.announce_if_generation_ready(os.getpid(), expected=2) is None
    assert readiness.announced(os.getpid()) is None


def test_an_unreachable_socket_releases_the_claim(workers, tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    monkeypatch.setenv("GUNICORN_PID", "1")
    for pid in workers:
        _ready(pid)
    assert sdnotify.announce_if_generation_ready(os.getpid(), expected=2) is None
    assert readiness.claim_announcement(os.getpid()) is True  # a later try may still announce
