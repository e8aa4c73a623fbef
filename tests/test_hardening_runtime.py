"""The runtime directory is trusted only when it is this user's own; a runtime directory that
fails (full, unwritable, unsafe) never takes a serving site down and never ends in a traceback;
exit codes after a signal say what really happened.

Fast: no Gunicorn. Where a Gunicorn object is needed, a minimal stand-in with only the
attributes the real code reads is passed to the real code (the hook, the reload engine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from django_zerodeploy import exit_codes, gunicorn_conf
from django_zerodeploy import runtime as runtime_mod
from django_zerodeploy.conf import app_settings
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.gunicorn import readiness
from django_zerodeploy.gunicorn import reloader as reload_mod
from django_zerodeploy.gunicorn.master import Master
from django_zerodeploy.gunicorn.probe import GunicornConfig
from django_zerodeploy.gunicorn.readiness import WorkerReport
from django_zerodeploy.gunicorn.result import PhaseRecorder
from django_zerodeploy.gunicorn.strategies import generation, in_place, usr2
from django_zerodeploy.gunicorn.strategies.context import ReloadContext
from django_zerodeploy.health import drain
from django_zerodeploy.health.builtin import DrainingCheck
from django_zerodeploy.health.runner import execute

NOBODY = 65534
needs_root = pytest.mark.skipif(os.getuid() != 0, reason="changes file owners / drops privileges")


@pytest.fixture
def runtime(settings, tmp_path: Path) -> Path:
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "run"), "REPO_DIR": str(tmp_path)}
    return tmp_path / "run"


@pytest.fixture
def sleeper() -> Iterator[Callable[..., psutil.Process]]:
    """Processes of this test standing in for a Gunicorn master; killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*ignore: int) -> psutil.Process:
        code = "import signal, time\n"
        code += "".join(f"signal.signal({int(s)}, signal.SIG_IGN)\n" for s in ignore)
        code += "print('ready', flush=True)\ntime.sleep(60)\n"
        started.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE))
        # a signal sent before the child ignores it would kill it (SIGUSR2's default action)
        assert started[-1].stdout is not None and started[-1].stdout.readline() == b"ready\n"
        return psutil.Process(started[-1].pid)

    yield start
    for popen in started:
        popen.kill()
        popen.communicate()  # reaps it and closes its stdout


def master_for(proc: psutil.Process) -> Master:
    return Master(
        pid=proc.pid,
        pidfile=None,
        cwd=Path("/"),
        cmdline=["gunicorn", "app:app"],
        environ={},
        under_systemd=False,
        daemon=False,
        preload=False,
        wsgi_app="app:app",
        create_time=proc.create_time(),
    )


def as_nobody(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``action`` in a fork of this process that dropped root for uid 65534: a real
    permission failure, which root itself never meets."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        payload = '{"error": "child failed"}'
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            payload = json.dumps(action())
        except BaseException as exc:  # noqa: BLE001
            payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        finally:
            with os.fdopen(write, "w") as handle:
                handle.write(payload)
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as handle:
        data = handle.read()
    os.waitpid(pid, 0)
    return json.loads(data)


# -- S1: whose runtime directory ---------------------------------------------------------------
def expect_refused(match: str) -> CommandFailure:
    with pytest.raises(CommandFailure) as refused:
        _ = app_settings.runtime_dir
    assert refused.value.exit_code == exit_codes.USAGE
    assert match in refused.value.message, refused.value.message
    return refused.value


@needs_root
def test_a_runtime_dir_owned_by_another_user_is_refused(runtime):
    runtime.mkdir(mode=0o700)
    os.chown(runtime, NOBODY, NOBODY)
    refused = expect_refused("is owned by")
    assert str(runtime) in refused.message and "RUNTIME_DIR" in refused.message


def test_a_group_or_world_writable_runtime_dir_is_refused(runtime):
    runtime.mkdir()
    os.chmod(runtime, 0o777)  # noqa: S103
    expect_refused("group or other users can write it (mode 0777)")
    os.chmod(runtime, 0o775)  # noqa: S103
    expect_refused("mode 0775")
    # readable by others is fine for a configured directory
    os.chmod(runtime, 0o755)  # noqa: S103
    assert app_settings.runtime_dir == runtime


def test_a_symlinked_runtime_dir_is_refused(runtime, tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    runtime.symlink_to(real)
    expect_refused("symbolic link")


def test_a_runtime_dir_that_cannot_be_created_is_a_usage_error(settings, tmp_path):
    (tmp_path / "a-file").write_text("")
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "a-file" / "run")}
    refused = expect_refused(f"{tmp_path / 'a-file' / 'run'}: Not a directory")
    assert "Traceback" not in refused.message
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "a-file")}
    expect_refused("it exists and is not a directory")


def test_missing_parents_are_created_private(settings, tmp_path):
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "a" / "b" / "run")}
    assert app_settings.runtime_dir == tmp_path / "a" / "b" / "run"
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "run"):
        assert path.stat().st_mode & 0o777 == 0o700, path


@needs_root
def test_the_default_folder_under_tmp_must_be_this_users_own(settings, tmp_path, monkeypatch):
    """The default per-user folder has a predictable name in a shared directory (/tmp):
    another user may have made it first."""
    monkeypatch.setattr(runtime_mod, "DEFAULT_ROOT", tmp_path)
    settings.ZERODEPLOY = {"REPO_DIR": str(tmp_path)}
    user_dir = tmp_path / f"django-zerodeploy-{os.getuid()}"
    user_dir.mkdir()
    os.chown(user_dir, NOBODY, NOBODY)
    expect_refused("is owned by")
    os.chown(user_dir, os.getuid(), os.getgid())
    # others may add entries: something may be planted already
    os.chmod(user_dir, 0o733)  # noqa: S103
    expect_refused("mode 0733")
    # ours, read-only for others (as older versions made it): fixed
    os.chmod(user_dir, 0o755)  # noqa: S103
    path = app_settings.runtime_dir
    assert path.parent == user_dir and user_dir.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o700


def test_the_drain_check_fails_when_the_runtime_dir_is_unsafe(runtime):
    runtime.mkdir()
    os.chmod(runtime, 0o777)  # noqa: S103
    result = execute(DrainingCheck())
    assert result.status == "fail" and "Cannot use the runtime directory" in result.output
    with pytest.raises(CommandFailure) as refused:
        drain.set_draining(True, reason="maintenance")
    assert refused.value.exit_code == exit_codes.USAGE
    assert refused.value.message.startswith("Cannot change the drain flag: ")


# -- U1: the readiness hook and a failing runtime directory ------------------------------------
class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _add(self, level: str, message: str, *args: Any) -> None:
        self.lines.append((level, message % args if args else message))

    def warning(self, message: str, *args: Any) -> None:
        self._add("warning", message, *args)

    def error(self, message: str, *args: Any) -> None:
        self._add("error", message, *args)

    def exception(self, message: str, *args: Any) -> None:
        self._add("exception", message, *args)

    def info(self, message: str, *args: Any) -> None:
        self._add("info", message, *args)

    def text(self, level: str) -> str:
        return "\n".join(line for lvl, line in self.lines if lvl == level)


def broken_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [b"broken"]


def worker(master_pid: int, wsgi: Callable[..., Any] | None = None) -> SimpleNamespace:
    """A stand-in for a Gunicorn worker with the attributes the hook reads (a real worker
    would need a real Gunicorn: the hook's logic is what is tested here)."""
    cfg = SimpleNamespace(
        errorlog="-",
        daemon=False,
        preload_app=False,
        workers=1,
        pidfile=None,
        graceful_timeout=30,
        bind=["127.0.0.1:8000"],
        pre_exec=None,
    )
    return SimpleNamespace(
        ppid=master_pid, cfg=cfg, app=SimpleNamespace(app_uri="app:app"), wsgi=wsgi, log=Log()
    )


def break_workers_dir(runtime: Path) -> None:
    """The reports folder cannot be created (as a full disk or a bad permission would do)."""
    readiness.workers_dir().rmdir()
    (runtime / "workers").write_text("")


def test_a_proven_master_keeps_a_worker_that_cannot_report(runtime, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    master = os.getpid()
    readiness.mark_proven(master)
    break_workers_dir(runtime)
    hooked = worker(master)
    gunicorn_conf.post_worker_init(hooked)  # no SystemExit: the worker serves
    assert not getattr(hooked, "zerodeploy_ready", False)
    errors = hooked.log.text("error")
    assert "cannot report this worker ready" in errors and "serves without a ready report" in errors


@pytest.mark.django_db  # Django 6's model checks ask the database backend's features
def test_a_new_master_refuses_a_worker_that_cannot_report(runtime):
    break_workers_dir(runtime)
    hooked = worker(os.getpid())
    with pytest.raises(SystemExit) as refused:
        gunicorn_conf.post_worker_init(hooked)
    assert refused.value.code == gunicorn_conf.WORKER_BOOT_ERROR
    assert "cannot report ready" in hooked.log.text("error")


@needs_root
def test_an_unusable_runtime_dir_never_halts_the_master(runtime, settings, monkeypatch):
    """Whether the master served cannot be read: the hook must not guess "never" (exit 3)."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    runtime.mkdir(mode=0o700)
    os.chown(runtime, NOBODY, NOBODY)
    hooked = worker(os.getpid())
    gunicorn_conf.post_worker_init(hooked)
    assert "Cannot use the runtime directory" in hooked.log.text("error")

    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "SMOKE_URLS": ["/"]}
    refusing = worker(os.getpid(), wsgi=broken_app)
    with pytest.raises(SystemExit) as refused:
        gunicorn_conf.post_worker_init(refusing)
    assert refused.value.code == gunicorn_conf.WORKER_RETRY


def test_an_unreadable_proven_marker_is_not_taken_for_never(runtime, settings):
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "SMOKE_URLS": ["/"]}
    (readiness.masters_dir() / f"{os.getpid()}.proven").mkdir()  # read_text: IsADirectoryError
    with pytest.raises(IsADirectoryError):
        readiness.is_proven(os.getpid())
    with pytest.raises(SystemExit) as refused:
        gunicorn_conf.post_worker_init(worker(os.getpid(), wsgi=broken_app))
    assert refused.value.code == gunicorn_conf.WORKER_RETRY


def test_an_empty_proven_marker_is_rewritten(runtime):
    """An older version wrote the marker in place; a crash left it empty, and it was never
    rewritten: every later refusal would have halted a serving master."""
    marker = readiness.masters_dir() / f"{os.getpid()}.proven"
    marker.write_text("")
    assert not readiness.is_proven(os.getpid())
    readiness.mark_proven(os.getpid())
    assert readiness.is_proven(os.getpid())


def test_announcements_are_written_whole(runtime):
    assert readiness.claim_announcement(77)
    assert readiness.announced(77) is None  # claimed, not sent
    readiness.mark_announced(77, "MAINPID=77\nREADY=1")
    assert readiness.announced(77) == "MAINPID=77\nREADY=1"
    assert not readiness.claim_announcement(77)  # the claim never disappeared
    assert not list(readiness.masters_dir().glob(".tmp-*"))


# -- U4 / C1: signalling and exit codes ---------------------------------------------------------
@needs_root
def test_no_permission_to_signal_is_a_usage_error(sleeper):
    target = master_for(sleeper(signal.SIGUSR2))  # harmless even if it arrived

    def signal_it() -> dict[str, Any]:
        try:  # not SIGCONT: the kernel lets any process of the session send that one
            target.signal(signal.SIGUSR2)
        except CommandFailure as exc:
            return {"code": exc.exit_code, "message": exc.message, "signalled": target.signalled}
        return {"code": None, "signalled": target.signalled}

    outcome = as_nobody(signal_it)
    assert outcome.get("code") == exit_codes.USAGE, outcome
    assert outcome["message"] == (
        f"No permission to signal Gunicorn master {target.pid} (owned by user root): run this "
        "command as that user."
    )
    assert outcome["signalled"] is False


@pytest.fixture
def engine(runtime, monkeypatch, sleeper) -> Callable[..., Any]:
    """reload() on a stand-in master (a real process): finding and probing Gunicorn are
    replaced, everything from the lock to the exit code is the real engine.

    Why not a real Gunicorn here: these tests need a strategy that fails at one exact point
    (before any signal, or after one) with one exact kind of error, to pin how the engine
    turns that into an exit code. A real Gunicorn or systemd fails there only when it
    misbehaves, which cannot be produced on demand. The real strategies against a real
    Gunicorn are in test_reload*.py; the unusable lock is also tested with one below."""
    master = master_for(sleeper(signal.SIGUSR2))
    monkeypatch.setattr(reload_mod, "find_master", lambda **kwargs: master)
    monkeypatch.setattr(
        reload_mod, "_probe", lambda *args: GunicornConfig(ok=True, hooked=True, workers=1)
    )

    def run(runner: Callable[[ReloadContext], Any] | None = None) -> Any:
        if runner is not None:
            monkeypatch.setitem(reload_mod.RUNNERS, "usr2", runner)
        result = reload_mod.reload(strategy="usr2", run_preflight=False)
        result.master = master
        return result

    return run


@needs_root
def test_a_refused_usr2_signal_says_nothing_was_signalled(engine, settings):
    """The real usr2 runner, run without root, signalling a master of another user."""
    theirs = Path(tempfile.mkdtemp(prefix="zd-nobody-"))  # reachable by uid 65534
    try:
        os.chown(theirs, NOBODY, NOBODY)
        settings.ZERODEPLOY = {**settings.ZERODEPLOY, "RUNTIME_DIR": str(theirs)}

        def reload_it() -> dict[str, Any]:
            result = engine()
            return {"code": result.exit_code, "message": result.message}

        outcome = as_nobody(reload_it)
    finally:
        shutil.rmtree(theirs)
    assert outcome.get("code") == exit_codes.USAGE, outcome
    assert "No permission to signal Gunicorn master" in outcome["message"]


def test_a_usage_error_after_the_signal_is_not_nothing_changed(engine):
    def runner(ctx: ReloadContext) -> Any:
        ctx.master.signal(signal.SIGUSR2)  # ignored by the stand-in, but really sent
        raise CommandFailure("systemctl show failed.", exit_codes.USAGE)

    result = engine(runner)
    assert result.master.signalled
    assert result.exit_code == exit_codes.DOWN and "check the site" in result.message


def test_a_failure_that_keeps_the_old_release_keeps_exit_1(engine):
    def runner(ctx: ReloadContext) -> Any:
        ctx.master.signal(signal.SIGUSR2)
        raise CommandFailure("aborted, the old release still serves.", exit_codes.FAILED)

    assert engine(runner).exit_code == exit_codes.FAILED


def test_a_usage_error_before_any_signal_stays_a_usage_error(engine):
    def runner(ctx: ReloadContext) -> Any:
        raise CommandFailure("bad unit.", exit_codes.USAGE)

    result = engine(runner)
    assert not result.master.signalled and result.exit_code == exit_codes.USAGE


def test_an_unusable_reload_lock_is_a_usage_error(engine, runtime):
    runtime.mkdir(mode=0o700)
    (runtime / "reload.lock").mkdir()  # os.open(O_RDWR) fails: IsADirectoryError
    result = engine()
    assert result.exit_code == exit_codes.USAGE
    assert result.message.startswith(f"Cannot use the reload lock {runtime / 'reload.lock'}: ")
    assert "Unexpected error" not in result.message and not result.master.signalled


@pytest.mark.integration
def test_an_unusable_reload_lock_leaves_a_real_gunicorn_alone(site, gunicorn_factory):
    """The same refusal through the command, with a real master found and probed."""
    from tests.gunicorn.test_reload import reload_cli, started

    server = started(gunicorn_factory, site, workers=2)
    master, workers = server.master_pid(), set(server.worker_pids())
    (site.runtime / "reload.lock").mkdir()
    ran, result = reload_cli(site)
    assert ran.returncode == exit_codes.USAGE, ran.stdout + ran.stderr
    assert result["message"].startswith(
        f"Cannot use the reload lock {site.runtime / 'reload.lock'}: "
    )
    assert "Traceback" not in ran.stdout + ran.stderr
    assert server.master_pid() == master and set(server.worker_pids()) == workers
    assert server.served_releases() == {"v1"}


def test_systemd_main_pid_failing_after_a_good_reload(runtime, sleeper, monkeypatch):
    """The generation is verified and serves: exit 0, with the unconfirmed MainPID said.
    (The in-place reload and `systemctl show` are replaced: a systemd that reloads and then
    fails to answer cannot be produced on demand; the real systemd path is tested with one.)"""
    master = master_for(sleeper())
    ctx = ReloadContext(
        master,
        GunicornConfig(ok=True, workers=1),
        5,
        "",
        "site.service",
        PhaseRecorder(),
        "systemd",
    )
    monkeypatch.setattr(
        in_place,
        "_in_place",
        lambda ctx, send: ctx.result(True, exit_codes.OK, "Reloaded.", release="v2"),
    )

    def failing(unit: str) -> int:
        raise CommandFailure("`systemctl show` failed.", exit_codes.USAGE)

    monkeypatch.setattr(in_place.systemd, "main_pid", failing)
    result = in_place.run_systemd(ctx)
    assert (result.ok, result.exit_code) == (True, exit_codes.OK)
    assert "MainPID of site.service could not be confirmed" in result.message


# -- C5: one generation, several releases -------------------------------------------------------
# Observed generations are built here: workers of one master that loaded two different
# releases need a checkout moving while the workers boot, a race no test can hit on demand.
def mixed_generation(master_pid: int) -> generation.Generation:
    ready = [
        WorkerReport(101, master_pid, "a" * 40, 0.0, True),
        WorkerReport(102, master_pid, "b" * 40, 0.0, True),
    ]
    return generation.Generation(True, 2, ready, {101, 102}, [])


def test_in_place_reload_with_several_releases_is_not_verified(runtime, sleeper, monkeypatch):
    master = master_for(sleeper())
    ctx = ReloadContext(master, GunicornConfig(ok=True, workers=2), 5, "", None, PhaseRecorder())
    monkeypatch.setattr(generation, "observe", lambda *args, **kwargs: mixed_generation(master.pid))
    result = in_place._in_place(ctx, lambda: "HUP sent")
    assert not result.ok and result.exit_code == exit_codes.DOWN
    assert "2 different releases (aaaaaaaaaaaa, bbbbbbbbbbbb)" in result.message


def test_usr2_with_several_releases_is_aborted(runtime, sleeper, monkeypatch):
    old, new = master_for(sleeper(signal.SIGUSR2)), master_for(sleeper())
    ctx = ReloadContext(old, GunicornConfig(ok=True, workers=2), 5, "", None, PhaseRecorder())
    monkeypatch.setattr(usr2, "_new_master", lambda *args: new)
    monkeypatch.setattr(generation, "observe", lambda *args, **kwargs: mixed_generation(new.pid))
    aborted: list[str] = []

    def abort(ctx: ReloadContext, new: Master, pidfile2: Any, why: str) -> Any:
        aborted.append(why)
        return ctx.result(False, exit_codes.FAILED, why)

    monkeypatch.setattr(usr2, "_abort", abort)
    result = usr2.run_usr2(ctx)
    assert result.exit_code == exit_codes.FAILED and old.alive()  # the old one was not retired
    assert aborted and "(aaaaaaaaaaaa, bbbbbbbbbbbb)" in aborted[0]
