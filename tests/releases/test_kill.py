"""A deploy killed (SIGKILL, its whole process group) while it builds the new release: current
still names the complete release that serves, the site serves throughout (real Gunicorn under
load), and the next deploy marks the killed one interrupted, removes the unfinished release and
deploys."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from django_zerodeploy.releases.layout import ReleasesRoot
from tests.support.releases import (
    deploy_from_current,
    gunicorn_from_current,
    init_releases,
    release_python,
)

pytestmark = pytest.mark.integration


def test_a_deploy_killed_during_the_build_leaves_current_whole(
    site, tmp_path, gunicorn_factory, load_factory
):
    root_dir = tmp_path / "srv"
    init_releases(site, root_dir)
    root = ReleasesRoot(root_dir)
    first = root.current()
    server = gunicorn_factory(**gunicorn_from_current(site, root_dir))
    v2 = site.commit_release("v2")
    load = load_factory(port=server.port, clients=3, max_seconds=280, timeout=30).start()
    try:
        with load.operation():
            deploy = subprocess.Popen(
                [release_python(root_dir), "manage.py", "deploy", "--no-input"],
                cwd=root_dir / "current",
                env=site.env(PWD=str(root_dir / "current")),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(root.releases()) < 2:
                time.sleep(0.005)
            os.killpg(deploy.pid, signal.SIGKILL)  # mid-build: the clone is being made
            deploy.wait(timeout=30)
            assert len(root.releases()) == 2, "the deploy never started its build"
            assert root.current() == first and root.is_complete(first.name)
            assert server.get("/")[1].get("x-example-release") == "v1"
            result = deploy_from_current(site, root_dir)
    finally:
        report = load.stop()
    report.assert_covered()
    assert result.returncode == 0, result.stdout + result.stderr
    assert report.failed == 0, report.summary()
    assert report.last_marker == "v2", report.summary()
    assert "interrupted" in result.stdout
    assert "removed unfinished" in result.stdout
    current = root.current()
    assert current.sha12 == v2[:12] and root.is_complete(current.name)
    assert [r.name for r in root.releases()] == [first.name, current.name]
