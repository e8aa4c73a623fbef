"""A deploy killed (SIGKILL, its whole process group) while it builds the new release, and one
killed at the switch (just after ``ROOT/current`` moved to the new release, or once the reload's
USR2 made a new master, before the old master is retired): current names a complete release,
the site serves throughout (real Gunicorn under load), and the next deploy marks the killed one
interrupted and ends with the new release served by a master running from the release current
names; a next deploy that fails after its own switch goes back to the release that served."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from django_zerodeploy.gunicorn.processes import child_masters
from django_zerodeploy.releases.layout import Release, ReleasesRoot
from tests.support.releases import (
    deploy_from_current,
    gunicorn_from_current,
    init_releases,
    release_python,
)

pytestmark = pytest.mark.integration


@dataclass
class KillScene:
    """The example site in the releases layout on v1, Gunicorn serving it, v2 committed."""

    site: Any
    root: ReleasesRoot
    first: Release
    server: Any
    v2: str
    load_factory: Callable[..., Any]
    report: Any = None

    @contextlib.contextmanager
    def under_load(self) -> Iterator[None]:
        """Load through the whole block; ``report`` is checked to have covered it."""
        load = self.load_factory(port=self.server.port, clients=3, max_seconds=280, timeout=30)
        load.start()
        try:
            with load.operation():
                yield
        finally:
            self.report = load.stop()
        self.report.assert_covered()

    def kill_deploy_when(self, reached: Callable[[], bool], what: str) -> None:
        """Start a deploy from ROOT/current in its own process group and SIGKILL the whole
        group as soon as ``reached()`` holds (polled, so the kill lands just after it)."""
        deploy = subprocess.Popen(
            [release_python(self.root.path), "manage.py", "deploy", "--no-input"],
            cwd=self.root.current_link,
            env=self.site.env(PWD=str(self.root.current_link)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 240
        try:
            while not (hit := reached()) and deploy.poll() is None:
                assert time.monotonic() < deadline, f"the deploy never reached {what}"
                time.sleep(0.005)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(deploy.pid, signal.SIGKILL)
            deploy.wait(timeout=30)
        assert hit, f"the deploy ended (exit {deploy.returncode}) before {what}"

    def killed_steps(self) -> dict[str, str]:
        """Step name -> status of the newest deploy's record, as the killed process left it."""
        with contextlib.closing(sqlite3.connect(self.site.db_path)) as db:
            rows = db.execute(
                "select name, status from django_zerodeploy_deploymentstep where deployment_id ="
                " (select max(id) from django_zerodeploy_deployment) order by position"
            ).fetchall()
        return dict(rows)

    def assert_recovered(self, result: subprocess.CompletedProcess[str]) -> Release:
        """The next deploy: exit 0, no failed request, the killed deploy marked interrupted,
        v2 current and complete, served by a master that runs from the release current names."""
        out = f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-4000:]}"
        assert result.returncode == 0, out
        assert self.report.failed == 0, self.report.summary()
        assert self.report.last_marker == "v2", self.report.summary()
        assert "interrupted" in result.stdout, out
        current = self.root.current()
        assert current.sha12 == self.v2[:12] and self.root.is_complete(current.name)
        master = psutil.Process(self.server.master_pid())
        assert Path(master.cwd()) == current.path.resolve()
        assert self.server.get("/")[1].get("x-example-release") == "v2"
        return current


@pytest.fixture
def scene(site, tmp_path, gunicorn_factory, load_factory) -> KillScene:
    root_dir = tmp_path / "srv"
    init_releases(site, root_dir)
    root = ReleasesRoot(root_dir)
    server = gunicorn_factory(**gunicorn_from_current(site, root_dir))
    v2 = site.commit_release("v2")
    return KillScene(site, root, root.current(), server, v2, load_factory)


def test_a_deploy_killed_during_the_build_leaves_current_whole(scene):
    root, first = scene.root, scene.first
    with scene.under_load():
        # mid-build: the new release's directory exists, its clone is being made
        scene.kill_deploy_when(lambda: len(root.releases()) == 2, "the build")
        assert root.current() == first and root.is_complete(first.name)
        assert scene.server.get("/")[1].get("x-example-release") == "v1"
        result = deploy_from_current(scene.site, root.path)
    current = scene.assert_recovered(result)
    assert "removed unfinished" in result.stdout
    assert [r.name for r in root.releases()] == [first.name, current.name]


def new_masters(scene: KillScene) -> list[int]:
    """New masters a USR2 made of the serving one (not promoted: the pidfile names the old)."""
    return [c.pid for c in child_masters(psutil.Process(scene.server.master_pid()))]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


MOMENTS = {
    # ROOT/current moves nowhere but in the switch step's rename: killed just after it
    "current_moved": lambda scene: scene.root.current() != scene.first,
    # the reload's USR2 made a new master: killed before that master was promoted
    "new_master_forked": lambda scene: bool(new_masters(scene)),
}


def kill_at_the_switch(scene: KillScene, moment: str = "current_moved") -> Release:
    """Kill a deploy of v2 at ``moment`` of its switch, before it retired the old master, and
    prove that is where it died. Returns the release current names: complete, never promoted."""
    root, first = scene.root, scene.first
    scene.kill_deploy_when(lambda: MOMENTS[moment](scene), f"the switch ({moment})")
    killed = root.current()
    assert killed.sha12 == scene.v2[:12] and root.is_complete(killed.name)
    assert root.previous() == first
    steps = scene.killed_steps()
    assert steps["switch"] in ("running", "ok"), steps
    assert steps["verify"] != "ok" and steps["served_from"] != "ok", steps
    if moment == "new_master_forked":
        assert steps["reload"] == "running" and new_masters(scene), steps
    assert scene.server.get("/")[0] == 200
    return killed


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_deploy_killed_at_the_switch_leaves_current_whole_and_the_next_converges(scene, moment):
    root, first = scene.root, scene.first
    with scene.under_load():
        killed = kill_at_the_switch(scene, moment)
        leftovers = new_masters(scene)
        result = deploy_from_current(scene.site, root.path)
    current = scene.assert_recovered(result)
    assert current != killed  # a fresh release: the killed one never served
    assert all(gone(pid) for pid in leftovers), leftovers  # the unpromoted master was stopped
    # the release to roll back to is the one that served before, not the one that never did
    assert root.previous() == first, [r.name for r in root.releases()]
    assert root.is_complete(first.name) and root.is_complete(killed.name)


def test_a_failed_deploy_after_a_kill_at_the_switch_goes_back_to_what_served(scene):
    """current names the killed release, the old master serves v1: a broken v3 that fails
    after its own switch goes back to v1 (what served), not to the release that never did."""
    root, first = scene.root, scene.first
    with scene.under_load():
        killed = kill_at_the_switch(scene)
        scene.site.commit_release(
            "v3-broken", {"exampleproject/urls.py": "raise ImportError('broken URLconf')\n"}
        )
        result = deploy_from_current(scene.site, root.path)
    out = f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-4000:]}"
    assert result.returncode == 1, out
    assert "interrupted" in result.stdout and "rollback:switch" in result.stdout, out
    assert scene.report.failed == 0, scene.report.summary()
    assert scene.report.last_marker == "v1", scene.report.summary()
    assert root.current() == first and root.current() != killed
    assert root.previous() is None  # nothing served before v1: no release to roll back to
    assert Path(psutil.Process(scene.server.master_pid()).cwd()) == first.path.resolve()
