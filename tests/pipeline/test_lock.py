"""The deploy lock: one deploy at a time, a refusal that names the holder, and a lock the OS
releases when its holder dies, however it dies."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings

from django_zerodeploy import exit_codes
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.pipeline.lock import DeployLock

ROOT = Path(__file__).resolve().parents[2]
HOLDER = (
    "import sys, time\n"
    "from django_zerodeploy.pipeline.lock import DeployLock\n"
    "lock = DeployLock(__import__('pathlib').Path(sys.argv[1])).acquire()\n"
    "lock.update(deployment_id=42, trigger='cli')\n"
    "print('held', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


def hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the lock (own process group, stopped by pid)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_is_refused_at_once_with_the_holder_named(tmp_path):
    path = tmp_path / "deploy.lock"
    first = DeployLock(path).acquire()
    first.update(deployment_id=7, trigger="admin")
    started = time.monotonic()
    with pytest.raises(CommandFailure) as refused:
        DeployLock(path).acquire()
    # refused, not waited for: a generous bound that only tells "refused" from "blocked"
    assert time.monotonic() - started < 30
    assert refused.value.exit_code == exit_codes.LOCKED
    message = refused.value.message
    assert f"pid {os.getpid()}" in message and "deployment #7" in message
    assert "since 20" in message and "via admin" in message and "--wait-lock" in message
    assert DeployLock(path).is_held()
    first.release()
    assert not DeployLock(path).is_held()
    DeployLock(path).acquire().release()


def test_lock_of_a_killed_process_is_free(tmp_path):
    path = tmp_path / "deploy.lock"
    holder = hold(path, 60)
    try:
        with pytest.raises(CommandFailure) as refused:
            DeployLock(path).acquire()
        assert f"pid {holder.pid}" in refused.value.message
        assert "deployment #42" in refused.value.message
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        lock = DeployLock(path).acquire()  # the kernel dropped the flock with the process
        assert lock.held
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_wait_lock_waits_for_the_holder(tmp_path):
    path = tmp_path / "deploy.lock"
    holder = hold(path, 1.0)
    seen = []
    try:
        lock = DeployLock(path).acquire(wait=30, on_wait=seen.append)
        assert lock.held
        assert seen and seen[0].pid == holder.pid
        assert lock.held_by().pid == os.getpid()
        lock.release()
    finally:
        holder.wait(10)


def test_wait_lock_gives_up_after_the_wait(tmp_path):
    path = tmp_path / "deploy.lock"
    holder = hold(path, 30)
    try:
        started = time.monotonic()
        with pytest.raises(CommandFailure) as refused:
            DeployLock(path).acquire(wait=0.5)
        assert 0.4 < time.monotonic() - started < 10
        assert "after waiting 0.5 s" in refused.value.message
    finally:
        holder.kill()
        holder.wait(10)


SPAWNER = (
    "import os, sys, time\n"
    "from django_zerodeploy.pipeline.lock import DeployLock\n"
    "lock = DeployLock(__import__('pathlib').Path(sys.argv[1])).acquire()\n"
    "# posix_spawn closes no descriptor itself (unlike subprocess's close_fds): only the lock's\n"
    "# own close-on-exec flag keeps it out of a step's long-lived child\n"
    "child = os.posix_spawn(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)'],"
    " dict(os.environ), setsid=True)\n"
    "print(child, flush=True)\n"
    "time.sleep(60)\n"
)


def open_files(pid: int) -> set[str]:
    """What ``pid``'s descriptors name. One that closes while it is listed (the child may still
    be importing) is passed over: an inherited lock descriptor would stay open throughout."""
    names = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            names.add(os.readlink(fd))
    return names


def test_a_child_left_by_a_step_never_keeps_the_lock(tmp_path):
    """A deploy dies while a process it started lives on (a daemon an extra step left): the
    lock must be free at once, so the child must never have had the lock's descriptor."""
    path = tmp_path / "deploy.lock"
    deploy = subprocess.Popen(
        [sys.executable, "-c", SPAWNER, str(path)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert deploy.stdout is not None
    child = int(deploy.stdout.readline())
    try:
        assert DeployLock(path).is_held()
        os.kill(deploy.pid, signal.SIGKILL)
        deploy.wait(10)
        os.kill(child, 0)  # the child still runs
        assert str(path) not in open_files(child)
        assert not DeployLock(path).is_held()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        deploy.kill()
        deploy.wait(10)


def test_an_unusable_lock_file_is_usage_not_a_traceback(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CommandFailure) as failed:
        DeployLock(blocker / "run" / "deploy.lock").acquire()
    assert failed.value.exit_code == exit_codes.USAGE
    assert "Cannot use the deploy lock" in failed.value.message


@pytest.mark.django_db
def test_deploy_exits_2_when_the_lock_file_cannot_be_opened(runtime, capsys):
    (runtime / "deploy.lock").mkdir()  # os.open(O_RDWR) on a directory: IsADirectoryError
    out, err = io.StringIO(), io.StringIO()
    with override_settings(ZERODEPLOY={"RUNTIME_DIR": str(runtime)}):
        with pytest.raises(SystemExit) as exited:
            call_command("deploy", "--no-input", stdout=out, stderr=err)
    printed = "".join(capsys.readouterr()) + out.getvalue() + err.getvalue()  # echo: sys.stdout
    assert exited.value.code == exit_codes.USAGE, printed
    assert "Cannot use the deploy lock" in printed and "Traceback" not in printed
