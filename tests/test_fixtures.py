"""The fixtures are real: real git, a real Gunicorn, a load generator that sees real failures."""

from __future__ import annotations

import time

import pytest

from tests.support.site import git

pytestmark = pytest.mark.integration


def test_site_repositories_are_real_git(site):
    assert site.server_branch() == "main"
    assert git(site.server, "rev-parse", "--abbrev-ref", "main@{upstream}") == "origin/main"
    sha = site.commit_release("v2")
    git(site.server, "fetch", "-q", "origin")
    assert git(site.server, "rev-parse", "origin/main") == sha
    assert site.server_head() != sha  # the server moves only when deployed
    # nothing of the site's state lives in the checkout
    assert git(site.server, "status", "--porcelain", "--untracked-files=all") == ""


def test_gunicorn_serves_and_load_counts_refused_connections(site, gunicorn_factory, load_factory):
    server = gunicorn_factory(workers=2)
    assert server.served_release() == "v1"
    assert server.healthz()["releaseId"] == site.server_head()
    load = load_factory(port=server.port, clients=4, max_seconds=20).start()
    time.sleep(1.0)
    server.kill_hard()  # stop Gunicorn on purpose under load
    time.sleep(1.0)
    report = load.stop()
    assert report.total > 20
    assert report.markers["v1"] > 0
    assert report.failed > 0, report.summary()
    assert {h.error for h in report.failures} & {"ConnectionRefusedError"}, report.summary()
    assert server.master_pid() is None


@pytest.mark.parametrize("mode", ["daemon", "uds"])
def test_gunicorn_modes(site, gunicorn_factory, load_factory, mode):
    server = gunicorn_factory(daemon=(mode == "daemon"), uds=(mode == "uds"))
    with load_factory(port=server.port, uds=server.uds, clients=2, max_seconds=10) as load:
        time.sleep(0.5)
    report = load.report
    assert report.total > 0 and report.failed == 0, report.summary()
    assert report.markers == {"v1": report.total}
    master = server.master_pid()
    server.stop()
    assert master and not _alive(master)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
