"""The readiness hook (post_worker_init) when the runtime directory fails: a full, unwritable or
unsafe directory never takes a serving master down, and a new master never serves unproven.

Fast: no Gunicorn. A minimal stand-in worker with only the attributes the hook reads is passed
to the real hook.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from django_zerodeploy import gunicorn_conf
from django_zerodeploy.gunicorn import readiness
from tests.support.users import NOBODY, needs_root


@pytest.fixture
def runtime(settings, tmp_path: Path) -> Path:
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "run"), "REPO_DIR": str(tmp_path)}
    return tmp_path / "run"


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
