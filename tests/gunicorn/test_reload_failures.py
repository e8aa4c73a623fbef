"""A reload that must not happen: broken code, a wrong pid, no Gunicorn, a generation that is
not ready in time. The old release keeps serving every request and the exit code says why.

Some cases call ``reload()`` in-process (as the deploy pipeline does) with
``run_preflight=False``, to prove that the worker hook alone keeps a broken generation from
taking a request: the new master halts and the old one serves on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from django_zerodeploy import exit_codes
from django_zerodeploy.gunicorn import reload
from tests.gunicorn.test_reload import (
    alive,
    assert_served,
    finish,
    gunicorn_log,
    new_release,
    reload_cli,
    signal_recorder_fixture,  # noqa: F401 (the signal_recorder fixture)
    started,
    under_load,
)

pytestmark = pytest.mark.integration

BROKEN_URLS = (
    "from django.urls import include, path\n"
    "from notes import views\n"
    "import notes.no_such_module  # a typo that only the URLconf import reveals\n"
    "urlpatterns = [path('', views.home), path('', include('django_zerodeploy.urls'))]\n"
)


@pytest.fixture
def site_settings(settings, site):  # noqa: ANN001, ANN201
    """This test process's settings pointed at the site, for in-process reload() calls."""
    settings.ZERODEPLOY = {
        "REPO_DIR": str(site.server),
        "RUNTIME_DIR": str(site.runtime),
        "GUNICORN_PIDFILE": str(site.pidfile),
        "SMOKE_URLS": ["/"],
    }
    return settings


def _no_new_master(server, master: int, workers: set[int]) -> None:  # noqa: ANN001
    assert server.master_pid() == master
    assert set(server.worker_pids()) == workers


@pytest.mark.parametrize(
    "breakage", [pytest.param("urlconf", marks=pytest.mark.matrix), "smoke-500"]
)
def test_broken_release_is_refused_by_preflight_and_by_the_worker_hook(
    site, gunicorn_factory, load_factory, site_settings, breakage
):
    server = started(gunicorn_factory, site, workers=2)
    master, workers = server.master_pid(), set(server.worker_pids())
    if breakage == "urlconf":
        new_release(site, "v2", {"exampleproject/urls.py": BROKEN_URLS})
    else:  # the home page answers 500 and SMOKE_URLS = ["/"] (the example's default)
        views = (site.dev / "notes" / "views.py").read_text()
        new_release(
            site,
            "v2",
            {
                "notes/views.py": views.replace(
                    "def home(request):\n",
                    "def home(request):\n    raise RuntimeError('the new home page is broken')\n",
                    1,
                )
            },
        )
    load = under_load(server, load_factory)

    # 1. the command: the preflight refuses before any signal
    ran, result = reload_cli(site)
    assert ran.returncode == exit_codes.FAILED, ran.stdout + ran.stderr
    step = "urlconf" if breakage == "urlconf" else "smoke"
    assert f"Preflight failed at {step}" in result["message"]
    if breakage == "urlconf":
        assert "No module named 'notes.no_such_module'" in result["message"]
        assert "notes.no_such_module" in result["output"]  # the last traceback frames
    else:
        assert "/ answered 500" in result["message"]
        assert "the new home page is broken" in result["output"]
    assert [p["name"] for p in result["phases"]] == ["found master", "preflight"]
    _no_new_master(server, master, workers)
    assert "usr2" not in gunicorn_log(server)

    # 2. without the preflight, the worker hook refuses: the new master halts, the old serves
    lines: list[str] = []
    outcome = reload(run_preflight=False, timeout=90, echo=lines.append)
    report = finish(load)
    assert outcome.exit_code == exit_codes.FAILED, (outcome.message, lines)
    assert not outcome.ok and outcome.new_master_pid and not alive(outcome.new_master_pid)
    expected = (
        "the URLconf failed to load"
        if breakage == "urlconf"
        else "smoke URL failed: / answered 500"
    )
    assert expected in outcome.message
    assert "refuses to boot (exit 3)" in gunicorn_log(server)
    assert [p.name for p in outcome.phases][-1] == "aborted"
    _no_new_master(server, master, workers)
    assert not Path(f"{site.pidfile}.2").exists()
    assert report.failed == 0, report.summary()
    assert report.markers.keys() == {"v1"}, report.summary()  # the broken one never answered
    assert_served(server, site, "v1")


def test_broken_settings_never_reach_gunicorn(site, gunicorn_factory, load_factory, site_settings):
    """Settings that fail to import: ``manage.py`` itself cannot start in that checkout (so the
    command exits 1 before doing anything), and the library, as the deploy pipeline calls it
    from a process that still has working settings, refuses at the preflight."""
    server = started(gunicorn_factory, site, workers=2)
    master, workers = server.master_pid(), set(server.worker_pids())
    settings_py = (site.dev / "exampleproject" / "settings.py").read_text()
    new_release(
        site,
        "v2",
        {"exampleproject/settings.py": settings_py + "\nimport no_such_settings_dependency\n"},
    )
    load = under_load(server, load_factory)

    ran, _ = reload_cli(site)
    assert ran.returncode == 1
    assert "no_such_settings_dependency" in ran.stderr

    outcome = reload(timeout=60)
    report = finish(load)
    assert outcome.exit_code == exit_codes.FAILED
    assert "Preflight failed at import-wsgi" in outcome.message
    assert "No module named 'no_such_settings_dependency'" in outcome.message
    assert "settings.py" in outcome.output
    _no_new_master(server, master, workers)
    assert "usr2" not in gunicorn_log(server)
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v1")


def test_a_generation_not_ready_in_time_is_stopped_and_the_old_one_kept(
    site, gunicorn_factory, load_factory
):
    """The app takes 3 s to boot and --timeout is 1 s: the new master is stopped (exit 1)."""
    server = started(gunicorn_factory, site, workers=2, env={"EXAMPLE_BOOT_DELAY": "3"})
    master, workers = server.master_pid(), set(server.worker_pids())
    new_release(site, "v2")
    load = under_load(server, load_factory)
    ran, result = reload_cli(site, "--timeout", "1")
    report = finish(load)

    assert ran.returncode == exit_codes.FAILED, ran.stdout + ran.stderr
    assert "new workers were ready after 1 s" in result["message"]
    assert "old release still serves" in result["message"]
    assert result["new_master_pid"] and not alive(result["new_master_pid"])
    _no_new_master(server, master, workers)
    assert not Path(f"{site.pidfile}.2").exists()
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v1")


def test_wrong_pidfiles_get_no_signal(
    site, gunicorn_factory, load_factory, signal_recorder, site_settings, tmp_path
):
    """A stale pidfile, a pidfile naming another program, a missing pidfile and a pidfile naming
    a worker: nothing is signalled, and since the real master of this project runs elsewhere
    the mistake is a configuration error (exit 2) that names it. The first two go through the
    command, the others through the library (``reload()``, as the deploy pipeline calls it)."""
    server = started(gunicorn_factory, site, workers=2)
    master, workers = server.master_pid(), set(server.worker_pids())
    bystander = signal_recorder()
    dead = signal_recorder()
    dead.stop()
    cases = {
        "stale": (f"{dead.pid}\n", "which is not running (stale)"),
        "other-program": (f"{bystander.pid}\n", "not Gunicorn"),
        "worker": (f"{sorted(workers)[0]}\n", "is a worker of Gunicorn master"),
        "garbage": ("not a pid\n", "does not hold a pid"),
        "missing": (None, "does not exist"),
    }
    load = under_load(server, load_factory)
    for name, (content, why) in cases.items():
        pidfile = tmp_path / f"{name}.pid"
        if content is not None:
            pidfile.write_text(content)
        if name in ("stale", "other-program"):
            ran, result = reload_cli(site, "--pidfile", str(pidfile))
            assert ran.returncode == exit_codes.USAGE, (name, ran.stdout, ran.stderr)
        else:
            outcome = reload(pidfile=pidfile)
            assert outcome.exit_code == exit_codes.USAGE, (name, outcome.message)
            result = outcome.as_dict()
        assert why in result["message"], (name, result["message"])
        assert f"runs as pid {master}" in result["message"], result["message"]
        assert "nothing was signalled" in result["message"]
    report = finish(load)
    assert bystander.alive() and bystander.received() == []
    _no_new_master(server, master, workers)
    assert "Handling signal" not in gunicorn_log(server)
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v1")


def test_gunicorn_not_running(site, signal_recorder):
    """No master of this project: exit 3 (the site is down and needs a person), whatever the
    pidfile says, and a program whose pid the pidfile names is not signalled."""
    ran, result = reload_cli(site)  # the configured pidfile does not exist
    assert ran.returncode == exit_codes.DOWN, ran.stdout + ran.stderr
    assert (
        "does not exist" in result["message"]
        and "no Gunicorn master of this project" in result["message"]
    )

    bystander = signal_recorder()
    site.pidfile.write_text(f"{bystander.pid}\n")
    ran, result = reload_cli(site)
    assert ran.returncode == exit_codes.DOWN
    assert "not Gunicorn" in result["message"]
    assert bystander.alive() and bystander.received() == []

    site.pidfile.write_text(f"{bystander.pid}\n")
    bystander.stop()
    ran, result = reload_cli(site)
    assert ran.returncode == exit_codes.DOWN
    assert "(stale)" in result["message"]

    os.unlink(site.pidfile)
    ran, result = reload_cli(site, ZERODEPLOY_PIDFILE="")  # no pidfile configured: psutil looks
    assert ran.returncode == exit_codes.DOWN
    assert "Gunicorn is not running for this project" in result["message"]
    plain = site.manage("reload_gunicorn", check=False)  # people get one sentence, no traceback
    assert plain.returncode == exit_codes.DOWN
    assert "Traceback" not in plain.stderr and "does not exist" in plain.stderr


@pytest.mark.integration
def test_an_unusable_reload_lock_leaves_a_real_gunicorn_alone(site, gunicorn_factory):
    """The same refusal through the command, with a real master found and probed."""
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
