"""Library pieces of the reload, called directly: recognising Gunicorn, reading its config,
refusing early, the lock, the hooks that run inside Gunicorn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from django_zerodeploy import exit_codes, gunicorn_conf
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.gunicorn import find_master, reload, reloader
from django_zerodeploy.gunicorn.probe import gunicorn_args, probe_config, started_as_module
from django_zerodeploy.gunicorn.processes import classify, is_gunicorn_cmdline
from django_zerodeploy.gunicorn.result import FOUND_MASTER, PhaseRecorder, ReloadResult
from django_zerodeploy.management.commands.reload_gunicorn import Command

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
    kind, why = classify(psutil.Process(os.getpid()), wait=0)
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
    reload_mod = reloader
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
