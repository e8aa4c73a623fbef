"""The hup and systemd strategies, and usr2 for a master that runs under systemd.

A real systemd runs these in tests/deploy/test_systemd_real.py (systemd-nspawn, as root). These keep a
stand-in for what the real one cannot show: the exact ``systemctl`` command lines built, and the
exact MAINPID datagram with the moment it arrived (the old master still alive); they also run
without root. A ``systemctl`` stand-in on PATH answers what the command asks
(``show -p MainPID --value UNIT``, ``show -p NotifyAccess --value UNIT``) and does what the
documented unit's ``ExecReload=/bin/kill -s HUP $MAINPID`` does on ``reload``; it logs every
command line it gets, so the tests check the exact commands built. systemd's notification
socket is stood in for by a real Unix datagram socket bound by the test, given to Gunicorn as
``NOTIFY_SOCKET`` (with ``INVOCATION_ID`` set, as systemd sets it for every service).
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from django_zerodeploy import exit_codes
from django_zerodeploy.gunicorn.result import STRATEGY
from tests.gunicorn.test_reload import (
    alive,
    assert_served,
    finish,
    gunicorn_log,
    new_release,
    reload_cli,
    started,
    under_load,
)

pytestmark = pytest.mark.integration

UNIT = "example-gunicorn.service"


def systemctl_standin(folder: Path, pidfile: Path, notify_access: str = "all") -> tuple[Path, Path]:
    """Write a ``systemctl`` that serves one unit whose MainPID is in ``pidfile``; returns
    (its bin folder, the log of its command lines)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = folder / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
unit=""
for arg in "$@"; do unit="$arg"; done
if [ "$unit" != "{UNIT}" ]; then echo "Unit $unit could not be found." >&2; exit 5; fi
case "$*" in
  "show -p MainPID --value "*) cat {pidfile} 2>/dev/null || echo 0 ;;
  "show -p NotifyAccess --value "*) echo {notify_access} ;;
  "reload "*) kill -s HUP "$(cat {pidfile})" ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir, log


def _path_with(site, bin_dir: Path) -> str:  # noqa: ANN001
    return f"{bin_dir}{os.pathsep}{site.env()['PATH']}"


def test_hup_reload_keeps_every_request_and_serves_the_new_release(
    site, gunicorn_factory, load_factory
):
    server = started(gunicorn_factory, site, workers=2)
    master, old_workers = server.master_pid(), set(server.worker_pids())
    sha = new_release(site, "v2")
    load = under_load(server, load_factory)
    ran, result = reload_cli(site, "--strategy", "hup")
    report = finish(load)

    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    assert result["strategy"] == "hup" and result["new_master_pid"] == master == server.master_pid()
    assert not set(server.worker_pids()) & old_workers  # every worker is new
    assert result["workers_ready"] == 2 and result["release"] == sha
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", sha)
    assert "Handling signal: hup" in gunicorn_log(server)


def test_systemd_strategy_runs_systemctl_reload_and_verifies(
    site, gunicorn_factory, load_factory, tmp_path
):
    """``--strategy systemd``: MainPID from ``systemctl show``, the reload through
    ``systemctl reload UNIT`` (the stand-in described in the module docstring), then the same
    verification as hup."""
    server = started(gunicorn_factory, site, workers=2, env={"INVOCATION_ID": "0123456789abcdef"})
    master, old_workers = server.master_pid(), set(server.worker_pids())
    bin_dir, log = systemctl_standin(tmp_path, site.pidfile)
    sha = new_release(site, "v2")
    load = under_load(server, load_factory)
    ran, result = reload_cli(
        site,
        "--strategy",
        "systemd",
        "--unit",
        UNIT,
        PATH=_path_with(site, bin_dir),
        ZERODEPLOY_PIDFILE="",
    )
    report = finish(load)

    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    assert log.read_text().splitlines() == [
        f"show -p MainPID --value {UNIT}",  # to find the master
        f"show -p MainPID --value {UNIT}",  # it is still MainPID right before the reload
        f"reload {UNIT}",
        f"show -p MainPID --value {UNIT}",
    ]
    assert result["phases"][0]["detail"].startswith(f"pid {master} (foreground, under systemd")
    assert any(p["detail"] == f"systemctl reload {UNIT}" for p in result["phases"])
    assert server.master_pid() == master and not set(server.worker_pids()) & old_workers
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", sha)


def test_usr2_under_systemd_without_notify_access_reloads_through_systemctl(
    site, gunicorn_factory, load_factory, tmp_path
):
    """Not Type=notify (no NOTIFY_SOCKET): a bare USR2 would get the new master killed when the
    old MainPID exits (Gunicorn #2856). The command sends no USR2 and reloads the way the
    unit's own ``systemctl reload`` does, behind the preflight and with the same checks."""
    server = started(gunicorn_factory, site, workers=2, env={"INVOCATION_ID": "0123456789abcdef"})
    master, workers = server.master_pid(), set(server.worker_pids())
    bin_dir, log = systemctl_standin(tmp_path, site.pidfile, notify_access="main")
    sha = new_release(site, "v2")
    load = under_load(server, load_factory)
    ran, result = reload_cli(site, "--unit", UNIT, PATH=_path_with(site, bin_dir))
    report = finish(load)

    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    assert result["strategy"] == "systemd"
    (switch,) = [p["detail"] for p in result["phases"] if p["name"] == STRATEGY]
    assert switch.startswith("usr2 -> systemd") and "#2856" in switch
    assert f"reload {UNIT}" in log.read_text().splitlines()
    assert server.master_pid() == master and not set(server.worker_pids()) & workers
    assert "usr2" not in gunicorn_log(server).lower()
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", sha)


class NotifySocket:
    """systemd's notification socket, stood in for by a datagram socket this test binds."""

    def __init__(self, path: Path, watch_pid: int) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.watch_pid = watch_pid
        self.messages: list[tuple[str, bool]] = []  # (message, was watch_pid alive then)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((data.decode(), alive(self.watch_pid)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_usr2_under_systemd_announces_the_new_mainpid_before_retiring_the_old(
    site, gunicorn_factory, load_factory, tmp_path
):
    """Type=notify + NotifyAccess=all + the hooks: the new master is announced as MAINPID on
    NOTIFY_SOCKET (exact message), once, after all its workers are ready and while the old
    master is still alive; then the old one is retired."""
    sock_path = tmp_path / "notify.sock"
    bin_dir, _ = systemctl_standin(tmp_path, site.pidfile, notify_access="all")
    listener = NotifySocket(sock_path, watch_pid=0)
    try:
        server = started(
            gunicorn_factory,
            site,
            workers=2,
            env={"INVOCATION_ID": "0123456789abcdef", "NOTIFY_SOCKET": str(sock_path)},
        )
        old = server.master_pid()
        listener.watch_pid = old
        sha = new_release(site, "v2")
        load = under_load(server, load_factory)
        ran, result = reload_cli(site, "--unit", UNIT, PATH=_path_with(site, bin_dir))
        report = finish(load)
        time.sleep(0.3)
    finally:
        listener.close()

    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    new = result["new_master_pid"]
    assert new == server.master_pid() != old and not alive(old)
    announcements = [
        (m, old_alive) for m, old_alive in listener.messages if m.startswith("MAINPID=")
    ]
    assert announcements == [
        (
            f"MAINPID={new}\nREADY=1\nSTATUS=Gunicorn master {new} ready with 2 workers (django-zerodeploy)",
            True,  # the old master was still alive: systemd never saw its MainPID exit
        )
    ]
    # Gunicorn's own boot notifications still arrive, from both masters
    assert [m for m, _ in listener.messages].count("READY=1\nSTATUS=Gunicorn arbiter booted") == 2
    names = [p["name"] for p in result["phases"]]
    assert names.index("systemd") < names.index("old retired")
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", sha)
