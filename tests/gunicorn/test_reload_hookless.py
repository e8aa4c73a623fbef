"""Gunicorn as the user already runs it: ``gunicorn myproject.wsgi -w 3 -b ...``, no ``-c``
config of ours, no pidfile, no readiness hook. ``reload_gunicorn`` and ``deploy`` must still
reload a good release (observed from outside: the new workers in Gunicorn's request loop, then
``releaseId`` from ``/healthz/``), refuse a broken one through the preflight, and never refuse
where a plain ``systemctl reload`` (HUP) would have reloaded a good release.

Each case runs under load and asserts zero failed requests and the release that serves. The
newest Gunicorn comes from the test virtualenv; an older one (22.0.0, the oldest the project
supports) is installed from PyPI into a small cached virtualenv (``gunicorn_venv``).
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from django_zerodeploy import exit_codes
from django_zerodeploy.gunicorn import reload
from django_zerodeploy.gunicorn.result import READINESS, STRATEGY
from tests.deploy.test_deploy import show
from tests.gunicorn.test_reload import (
    alive,
    assert_served,
    finish,
    new_release,
    reload_cli,
    under_load,
)
from tests.gunicorn.test_reload_failures import BROKEN_URLS
from tests.support.gunicorn import Gunicorn, free_port, gunicorn_venv
from tests.support.site import VENV_BIN, Site, git

pytestmark = pytest.mark.integration

OLDER = "22.0.0"
# no pidfile of ours: the command finds the master through the process table
NO_PIDFILE = {"ZERODEPLOY_PIDFILE": ""}
BROKEN_SETTINGS = "raise ImportError('broken settings in this release')\n"


def user_project(site: Site) -> None:
    """The example project as a user's project: no gunicorn.conf.py (so no hook of ours)."""
    site.commit_release("v1", {"gunicorn.conf.py": None}, message="No Gunicorn config")
    git(site.server, "pull", "-q")


def gunicorn_bin(version: str | None) -> Path:
    return (gunicorn_venv(version) / "bin") if version else VENV_BIN


def start_user_gunicorn(gunicorn_factory, site: Site, version: str | None = None, module=False):  # noqa: ANN001
    """``gunicorn exampleproject.wsgi -w 3 -b 127.0.0.1:PORT`` (or ``python -m gunicorn``)."""
    user_project(site)
    site.port = site.port or free_port()
    bindir = gunicorn_bin(version)
    head = [str(bindir / "python"), "-m", "gunicorn"] if module else [str(bindir / "gunicorn")]
    command = [*head, "exampleproject.wsgi", "-w", "3", "-b", f"127.0.0.1:{site.port}"]
    server: Gunicorn = gunicorn_factory(command=command, env=NO_PIDFILE)
    assert len(server.worker_pids()) == 3 and not site.pidfile.exists()
    # Without the hook a worker loads the URLconf on its first real request, so files checked
    # out under a running master would be imported by a worker that has not served yet (the
    # hook loads it in post_worker_init). Three concurrent 1 s requests on three sync workers:
    # each worker serves one, before the test checks out the next release under them.
    with ThreadPoolExecutor(3) as pool:
        assert set(pool.map(lambda _: server.get("/slow/?s=1")[0], range(3))) == {200}
    return server


def version_of(server: Gunicorn) -> str:
    python = Path(server.argv()[0]).parent / "python"
    code = "import gunicorn; print(gunicorn.__version__)"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.strip()


def hook_lines(result: dict) -> list[str]:
    return [p["detail"] for p in result["phases"] if p["name"] == READINESS]


@pytest.mark.parametrize("version", [None, OLDER], ids=["newest", OLDER])
def test_usr2_without_hook_reloads_a_good_release(site, gunicorn_factory, load_factory, version):
    server = start_user_gunicorn(gunicorn_factory, site, version)
    if version:
        assert version_of(server) == version
    old, old_workers = server.master_pid(), set(server.worker_pids())
    sha = new_release(site, "v2")
    load = under_load(server, load_factory)
    ran, result = reload_cli(site, **NO_PIDFILE)
    report = finish(load)
    print(f"hookless usr2 (Gunicorn {version_of(server)}): {report.summary()}")

    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    assert result["strategy"] == "usr2" and result["hooked"] is False
    new = result["new_master_pid"]
    assert new == server.master_pid() != old and not alive(old)
    assert not set(server.worker_pids()) & old_workers and len(server.worker_pids()) == 3
    assert result["release"] == sha and result["workers_ready"] == 3
    (line,) = hook_lines(result)  # one line: what the hook adds and how to add it
    assert "from django_zerodeploy.gunicorn_conf import *" in line
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", sha)


@pytest.mark.parametrize("version", [None, OLDER], ids=["newest", OLDER])
def test_hup_without_hook_reloads_in_place(site, gunicorn_factory, load_factory, version):
    server = start_user_gunicorn(gunicorn_factory, site, version)
    master, old_workers = server.master_pid(), set(server.worker_pids())
    sha = new_release(site, "v2")
    load = under_load(server, load_factory)
    ran, result = reload_cli(site, "--strategy", "hup", **NO_PIDFILE)
    report = finish(load)
    print(f"hookless hup (Gunicorn {version_of(server)}): {report.summary()}")

    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    assert result["strategy"] == "hup" and result["new_master_pid"] == master
    assert not set(server.worker_pids()) & old_workers and len(server.worker_pids()) == 3
    assert result["release"] == sha
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", sha)


def test_broken_release_without_hook_is_refused_by_the_preflight(
    site, gunicorn_factory, load_factory
):
    server = start_user_gunicorn(gunicorn_factory, site)
    master, workers = server.master_pid(), set(server.worker_pids())
    new_release(site, "v2", {"exampleproject/urls.py": BROKEN_URLS})
    load = under_load(server, load_factory)
    ran, result = reload_cli(site, **NO_PIDFILE)
    report = finish(load)

    assert ran.returncode == exit_codes.FAILED, ran.stdout + ran.stderr
    assert "Preflight failed at urlconf" in result["message"]
    assert server.master_pid() == master and set(server.worker_pids()) == workers
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v1")


def test_new_master_that_halts_without_hook_leaves_the_old_one_serving(
    site, gunicorn_factory, load_factory, settings
):
    """With the preflight skipped (as the deploy pipeline does after its own), a release whose
    WSGI module fails to import halts the new master (Gunicorn's WORKER_BOOT_ERROR); the
    command sees the old master's workers still in their request loop: exit 1, not 3."""
    settings.ZERODEPLOY = {"REPO_DIR": str(site.server), "RUNTIME_DIR": str(site.runtime)}
    server = start_user_gunicorn(gunicorn_factory, site)
    master, workers = server.master_pid(), set(server.worker_pids())
    new_release(site, "v2", {"exampleproject/settings.py": BROKEN_SETTINGS})
    load = under_load(server, load_factory)
    outcome = reload(run_preflight=False, timeout=60)
    report = finish(load)

    assert outcome.exit_code == exit_codes.FAILED, outcome.message
    assert "the old release still serves" in outcome.message
    assert outcome.new_master_pid and not alive(outcome.new_master_pid)
    assert server.master_pid() == master and set(server.worker_pids()) == workers
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v1")


def test_python_m_gunicorn_without_hook_falls_back_to_hup(site, gunicorn_factory, load_factory):
    """A USR2 re-exec of a ``python -m gunicorn`` master cannot import Django (Gunicorn
    #3281) and only our pre_exec hook fixes it: without it the command reloads in place, as
    ``systemctl reload`` would, behind the preflight."""
    server = start_user_gunicorn(gunicorn_factory, site, module=True)
    master, old_workers = server.master_pid(), set(server.worker_pids())
    sha = new_release(site, "v2")
    load = under_load(server, load_factory)
    ran, result = reload_cli(site, **NO_PIDFILE)
    report = finish(load)

    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    assert result["strategy"] == "hup" and result["new_master_pid"] == master
    (switch,) = [p["detail"] for p in result["phases"] if p["name"] == STRATEGY]
    assert switch.startswith("usr2 -> hup") and "#3281" in switch
    assert not set(server.worker_pids()) & old_workers
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", sha)


def test_deploy_without_hook_good_then_broken(site, gunicorn_factory, load_factory):
    """``manage.py deploy`` with the user's own Gunicorn: a good release serves, a broken one
    is refused with the good one still serving; no request fails in either."""
    from tests.deploy.test_deploy import under_load as deploy_under_load

    server = start_user_gunicorn(gunicorn_factory, site)
    good = site.commit_release("v2")
    result, report = deploy_under_load(site, server, load_factory, **NO_PIDFILE)
    assert result.returncode == exit_codes.OK, show(result)
    assert "from django_zerodeploy.gunicorn_conf import *" in result.stdout
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", good)

    site.commit_release("v3", {"exampleproject/settings.py": BROKEN_SETTINGS})
    result, report = deploy_under_load(site, server, load_factory, **NO_PIDFILE)
    assert result.returncode == exit_codes.FAILED, show(result)
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", good)
    assert site.server_head() == good


def test_usr2_without_hook_on_a_unix_socket_without_healthz_url(
    site, gunicorn_factory, load_factory
):
    """``-b unix:...`` and no HEALTHZ_URL: the reload still happens (the new workers in their
    request loop), the socket file keeps its inode, and the message says the release could not
    be verified rather than claiming it."""
    user_project(site)
    sock = site.runtime / "gunicorn.sock"
    command = [str(VENV_BIN / "gunicorn"), "exampleproject.wsgi", "-w", "3", "-b", f"unix:{sock}"]
    server: Gunicorn = gunicorn_factory(command=command, uds=True, env=NO_PIDFILE)
    inode = sock.stat().st_ino
    old = server.master_pid()
    new_release(site, "v2")
    load = under_load(server, load_factory)
    ran, result = reload_cli(site, ZERODEPLOY_HEALTHZ_URL="", **NO_PIDFILE)
    report = finish(load)

    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    assert result["new_master_pid"] == server.master_pid() != old and not alive(old)
    assert "the release is not verified" in result["message"] and result["release"] is None
    assert sock.stat().st_ino == inode
    assert report.failed == 0, report.summary()
    assert server.served_releases(6) == {"v2"}
