"""Library pieces of the reload, called directly: recognising Gunicorn, reading its config,
refusing early, the lock, the hooks that run inside Gunicorn."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from django_zerodeploy import exit_codes, gunicorn_conf
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.gunicorn import find_master, reload, reloader
from django_zerodeploy.gunicorn.master import Master
from django_zerodeploy.gunicorn.probe import (
    GunicornConfig,
    gunicorn_args,
    probe_config,
    started_as_module,
)
from django_zerodeploy.gunicorn.processes import is_gunicorn_cmdline, process_kind
from django_zerodeploy.gunicorn.readiness import WorkerReport
from django_zerodeploy.gunicorn.result import FOUND_MASTER, PhaseRecorder, ReloadResult
from django_zerodeploy.gunicorn.strategies import generation, in_place, usr2
from django_zerodeploy.gunicorn.strategies.context import ReloadContext
from django_zerodeploy.management.commands.reload_gunicorn import Command
from tests.support.users import NOBODY, as_nobody, needs_root

reload_mod = reloader

EXAMPLE = Path(__file__).resolve().parents[2] / "example_project"
VENV_PY = sys.executable


@pytest.mark.parametrize(
    ("cmdline", "args"),
    [
        ([VENV_PY, "-m", "gunicorn", "-c", "g.py", "app:app"], ["-c", "g.py", "app:app"]),
        ([VENV_PY, "/venv/bin/gunicorn", "--pid", "p", "app:app"], ["--pid", "p", "app:app"]),
        ([VENV_PY, "/venv/lib/site-packages/gunicorn/__main__.py", "app:app"], ["app:app"]),
        (["gunicorn: master [app:app]"], None),  # setproctitle rewrote it
        ([VENV_PY, "manage.py", "runserver"], None),
    ],
)
def test_gunicorn_command_lines(cmdline, args):
    assert gunicorn_args(cmdline) == args
    assert is_gunicorn_cmdline(cmdline) == (args is not None or cmdline[0].startswith("gunicorn:"))
    assert started_as_module(cmdline) == (cmdline[1:3] == ["-m", "gunicorn"])


def test_probe_reads_gunicorn_config_like_the_master(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(EXAMPLE))
    config = probe_config(
        VENV_PY, ["-c", "gunicorn.conf.py", "--preload", "--workers", "3"], EXAMPLE, env
    )
    assert config.ok, config.error
    assert config.wsgi_app == "exampleproject.wsgi:application"  # from the config file
    assert (config.preload, config.workers, config.daemon) == (True, 3, False)
    assert config.hooked and config.pre_exec_hooked

    bare = probe_config(VENV_PY, ["-c", str(tmp_path / "none.py"), "app:app"], tmp_path, env)
    assert not bare.ok and "does not load" in bare.error
    (tmp_path / "plain.py").write_text("workers = 1\n")
    plain = probe_config(VENV_PY, ["-c", "plain.py", "app:app"], tmp_path, env)
    assert plain.ok and not plain.hooked and plain.wsgi_app == "app:app"


def test_this_process_is_not_a_gunicorn_master():
    kind, why = process_kind(psutil.Process(os.getpid()), wait=0)
    assert kind == "other" and "not Gunicorn" in why


def test_find_master_errors_are_readable_and_signal_nothing(settings, tmp_path):
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "run"), "REPO_DIR": str(tmp_path)}
    with pytest.raises(CommandFailure) as missing:
        find_master(pidfile=tmp_path / "gunicorn.pid")
    assert missing.value.exit_code == exit_codes.DOWN
    assert (
        "does not exist" in missing.value.message
        and "nothing was signalled" in missing.value.message
    )
    (tmp_path / "me.pid").write_text(f"{os.getpid()}\n")
    with pytest.raises(CommandFailure) as me:
        find_master(pidfile=tmp_path / "me.pid")
    assert me.value.exit_code == exit_codes.DOWN and "not Gunicorn" in me.value.message
    with pytest.raises(CommandFailure) as nothing:
        find_master()
    assert nothing.value.exit_code == exit_codes.DOWN
    assert "Gunicorn is not running for this project" in nothing.value.message


def test_reload_refuses_bad_arguments_without_raising(settings, tmp_path):
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "run"), "REPO_DIR": str(tmp_path)}
    bad = reload(strategy="kill-9")
    assert (bad.ok, bad.exit_code) == (
        False,
        exit_codes.USAGE,
    ) and "Unknown strategy" in bad.message
    zero = reload(timeout=0)
    assert zero.exit_code == exit_codes.USAGE and "--timeout" in zero.message
    down = reload(pidfile=tmp_path / "missing.pid")
    assert down.exit_code == exit_codes.DOWN and down.strategy == "usr2"
    json.dumps(down.as_dict())  # --json can always print it


def test_a_second_reload_waits_for_the_lock_then_gives_up(settings, tmp_path, monkeypatch):
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "run"), "REPO_DIR": str(tmp_path)}
    monkeypatch.setattr(reload_mod, "LOCK_EXTRA_WAIT", 0.0)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with reload_mod.reload_lock(5, PhaseRecorder()):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(5)
        refused = reload(timeout=0.5)
    finally:
        release.set()
        thread.join(5)
    assert refused.exit_code == exit_codes.FAILED
    assert refused.message.startswith(f"Another reload (pid {os.getpid()}) is still running")
    assert "nothing was signalled" in refused.message


def test_pre_exec_reexecutes_the_real_command_line(monkeypatch):
    """Gunicorn #3281: after ``python -m gunicorn`` a USR2 re-exec must keep ``-m gunicorn``."""
    # a stand-in for the arbiter: only what pre_exec reads (no cwd: not a releases layout)
    server = SimpleNamespace(
        START_CTX={"args": [VENV_PY, "/site-packages/gunicorn/__main__.py", "-c", "g.py"]},
        cfg=SimpleNamespace(env_orig={}),
    )
    monkeypatch.setattr(sys, "argv", ["/site-packages/gunicorn/__main__.py", "-c", "g.py"])
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-X", "dev", "-m", "gunicorn", "-c", "g.py"])
    gunicorn_conf.pre_exec(server)
    assert server.START_CTX["args"] == [sys.executable, "-X", "dev", "-m", "gunicorn", "-c", "g.py"]
    assert gunicorn_conf.reexec_ok(SimpleNamespace(pre_exec=gunicorn_conf.pre_exec))
    assert not gunicorn_conf.reexec_ok(SimpleNamespace(pre_exec=lambda server: None))

    script = SimpleNamespace(
        START_CTX={"args": [VENV_PY, "/venv/bin/gunicorn", "app:app"]},
        cfg=SimpleNamespace(env_orig={}),
    )
    monkeypatch.setattr(sys, "argv", ["/venv/bin/gunicorn", "app:app"])
    monkeypatch.setattr(sys, "orig_argv", [VENV_PY, "/venv/bin/gunicorn", "app:app"])
    gunicorn_conf.pre_exec(script)
    assert script.START_CTX["args"] == [VENV_PY, "/venv/bin/gunicorn", "app:app"]  # untouched
    assert gunicorn_conf.reexec_ok(SimpleNamespace(pre_exec=lambda server: None))


def test_hooks_exported_for_a_star_import():
    """(A wrapped project hook runs in real workers: test_reload.py's own-hook test.)"""
    namespace: dict = {}
    exec("from django_zerodeploy.gunicorn_conf import *", namespace)  # noqa: S102
    assert {"post_worker_init", "pre_exec", "worker_exit"} <= set(namespace)
    assert "WORKER_BOOT_ERROR" not in namespace
    assert gunicorn_conf.with_readiness(lambda worker: None).zerodeploy_hook is True


def test_help_documents_the_exit_codes():
    text = Command().create_parser("manage.py", "reload_gunicorn").format_help()
    for code in ("0 reloaded", "1 refused or aborted", "2 bad usage", "3 the site is down"):
        assert code in " ".join(text.split())
    for option in ("--strategy", "--pidfile", "--timeout", "--json", "--unit"):
        assert option in text


def test_result_lines_are_timed():
    lines: list[str] = []
    recorder = PhaseRecorder(lines.append)
    recorder.phase("found master", "pid 1")
    assert lines[0].startswith("found master: pid 1 [") and lines[0].endswith(" s]")
    result = ReloadResult(True, 0, "usr2", "ok", phases=recorder.phases)
    assert result.as_dict()["phases"][0]["name"] == FOUND_MASTER


# -- signalling and exit codes, on stand-in masters (processes of this test) --------------------
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
        reload_mod, "read_config", lambda *args: GunicornConfig(ok=True, hooked=True, workers=1)
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


# -- one generation, several releases ----------------------------------------------------------
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


def test_the_worker_hooks_import_readiness_without_the_reload_machinery():
    """gunicorn_conf imports gunicorn.readiness inside every worker: the package's __init__
    runs first and must stay light (its names load when asked for)."""
    code = (
        "import sys, django_zerodeploy.gunicorn.readiness\n"
        "print(sorted(m for m in sys.modules if m.startswith('django_zerodeploy.gunicorn')))\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(ran.stdout.replace("'", '"'))
    assert "django_zerodeploy.gunicorn.reloader" not in loaded
    assert "django_zerodeploy.gunicorn.master" not in loaded
    from django_zerodeploy import gunicorn

    assert gunicorn.reload is reloader.reload and callable(gunicorn.find_master)
