"""What a reload waits for, on real processes: the exit of a master wakes the wait at once (a
pidfd), the poll that stands in without pidfds, the nudge that lets a new master promote
itself; and the configuration read that the deploy's permission check skips when no strategy
could need a permission."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from django_zerodeploy.gunicorn.master import Master
from django_zerodeploy.gunicorn.strategies.usr2 import _await_promotion
from django_zerodeploy.osutil import wait_exit

SLEEPER = "import time; time.sleep(60)"


def spawn(code: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code, *args], start_new_session=True)


def as_master(proc: subprocess.Popen[bytes]) -> Master:
    return Master(
        pid=proc.pid,
        pidfile=None,
        cwd=Path.cwd(),
        cmdline=[],
        environ={},
        under_systemd=False,
        daemon=False,
        preload=False,
        wsgi_app=None,
        create_time=psutil.Process(proc.pid).create_time(),
    )


@pytest.fixture
def processes():
    started: list[subprocess.Popen[bytes]] = []

    def make(code: str, *args: str) -> subprocess.Popen[bytes]:
        started.append(spawn(code, *args))
        return started[-1]

    yield make
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_wait_exit_returns_when_the_process_exits_and_not_before(processes):
    quick = processes("import time; time.sleep(0.3)")
    assert wait_exit(quick.pid, 60, lambda: True) is True
    assert psutil.Process(quick.pid).status() == psutil.STATUS_ZOMBIE  # exited, not yet reaped
    sleeper = processes(SLEEPER)
    assert wait_exit(sleeper.pid, 0.05, lambda: True) is False
    assert sleeper.poll() is None
    # a pid that is no longer the process meant (reused) is never waited for
    assert wait_exit(sleeper.pid, 60, lambda: False) is True


def test_wait_gone_with_and_without_pidfds(processes, monkeypatch):
    master = as_master(processes("import time; time.sleep(0.3)"))
    assert master.wait_gone(60) and not master.alive()
    still = as_master(processes(SLEEPER))
    assert not still.wait_gone(0.05)
    # this kernel has pidfds; one without them is stood in for by removing os.pidfd_open
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    polled = as_master(processes("import time; time.sleep(0.3)"))
    assert polled.wait_gone(60, interval=0.01) and not polled.alive()
    assert not still.wait_gone(0.05, interval=0.01) and still.alive()


def test_a_new_master_whose_parent_is_gone_is_woken_to_promote_itself(processes, tmp_path):
    """Gunicorn's arbiter checks its parent only when its loop turns; the reload sends it a
    SIGCHLD (which reaps nothing) once the old master has exited. The stand-in records it."""
    old = as_master(processes("pass"))
    old_proc = psutil.Process(old.pid)
    old_proc.wait(30)
    got = tmp_path / "got"
    ready = tmp_path / "ready"
    code = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGCHLD, lambda *a: pathlib.Path(sys.argv[1]).write_text('chld'))\n"
        "pathlib.Path(sys.argv[2]).write_text('up')\n"
        "time.sleep(60)\n"
    )
    new_proc = processes(code, str(got), str(ready))
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    new = as_master(new_proc)
    assert _await_promotion(old, new, None)  # no pidfile: promoted once its parent is gone
    while not got.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got.read_text() == "chld" and new.alive()


def test_the_permission_check_reads_the_config_only_when_a_strategy_could_need_one(
    processes, monkeypatch
):
    """A master of this user, not under systemd: every strategy may signal it, so the
    deploy's environment step reads no Gunicorn configuration (the reload reads it anyway).
    Under systemd the strategy may become ``systemd``, whose permission depends on it. The spy
    only counts; the real read runs."""
    from django_zerodeploy.pipeline import serving

    calls = []
    real = serving.read_config

    def spy(master, timeout):  # noqa: ANN001, ANN202
        calls.append(master.pid)
        return real(master, timeout)

    monkeypatch.setattr(serving, "read_config", spy)
    mine = as_master(processes(SLEEPER))
    serving.require_reload_permission(mine)
    assert calls == []
    mine.under_systemd = True
    serving.require_reload_permission(mine)
    assert calls == [mine.pid]
