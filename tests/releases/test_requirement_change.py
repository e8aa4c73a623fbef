"""A requirement change in the releases layout, with real Gunicorn under load and real pip (wheels
the test builds): the new release gets a new venv, built while the previous release keeps
serving from its own venv, which the deploy never touches; the new master runs from the new
release and venv. With ``KEEP_RELEASES = 1`` the deploys that follow prune the oldest releases
and the venvs no kept release uses, never the current or the previous one."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from django_zerodeploy.releases.layout import ReleasesRoot
from tests.support.releases import (
    deploy_under_load,
    master_cwd,
    requirements_with,
    serve_from_releases,
    show,
    step_line,
    use_wheelhouse,
)

pytestmark = pytest.mark.integration


@dataclass
class Moments:
    """When (time.monotonic()) a new venv directory first appeared, and current first moved."""

    venv_began: float | None = None
    switched: float | None = None


@contextmanager
def watch_build_and_switch(root: ReleasesRoot) -> Iterator[Moments]:
    seen = Moments()
    venvs_before = set(os.listdir(root.venvs_dir))
    current_before = os.readlink(root.current_link)
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set() and seen.switched is None:
            if seen.venv_began is None and set(os.listdir(root.venvs_dir)) - venvs_before:
                seen.venv_began = time.monotonic()
            if os.readlink(root.current_link) != current_before:
                seen.switched = time.monotonic()
            time.sleep(0.005)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)


def dist_infos(venv: Path) -> dict[str, str]:
    """Every installed distribution of a venv, with its METADATA."""
    (site_packages,) = venv.glob("lib/python*/site-packages")
    return {d.name: (d / "METADATA").read_text() for d in site_packages.glob("*.dist-info")}


def probe_version(python: Path) -> str:
    code = "import zdprobe; print(zdprobe.VERSION)"
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def master_venv(server) -> Path:
    """The venv the serving master was executed from (its argv[0] is ``<venv>/bin/python``)."""
    return Path(psutil.Process(server.master_pid()).cmdline()[0]).parent.parent.resolve()


def test_a_requirement_change_builds_a_new_venv_beside_the_serving_one_then_pruning(
    site, tmp_path, gunicorn_factory, load_factory
):
    use_wheelhouse(site, tmp_path / "wheels", "zdprobe", ("1.0", "2.0"))
    site.extra_env["ZERODEPLOY_KEEP_RELEASES"] = "1"
    root_dir, root, server = serve_from_releases(site, tmp_path, gunicorn_factory)
    first = root.current()
    first_venv = root.venvs_dir / str(first.venv_key)

    site.commit_release("v2", {"requirements.txt": requirements_with("zdprobe==1.0")})
    result, report = deploy_under_load(site, root_dir, server, load_factory)
    assert result.returncode == 0, show(result)
    assert report.failed == 0 and report.last_marker == "v2", report.summary()
    second = root.current()
    assert second.venv_key != first.venv_key and first_venv.is_dir()
    assert "nothing to prune" in step_line(result.stdout, "prune")  # current and previous
    old_venv = root.venvs_dir / second.venv_key
    old_packages = dist_infos(old_venv)
    assert "zdprobe-1.0.dist-info" in old_packages

    site.commit_release("v3", {"requirements.txt": requirements_with("zdprobe==2.0")})
    with watch_build_and_switch(root) as moments:
        result, report = deploy_under_load(site, root_dir, server, load_factory)
    assert result.returncode == 0, show(result)
    assert report.failed == 0 and report.last_marker == "v3", report.summary()
    third = root.current()
    assert third.venv_key not in {first_venv.name, second.venv_key}  # a new venv was built
    # seeded from the serving venv's packages: pip changed only zdprobe
    assert f"built with pip from {second.venv_key}'s packages" in step_line(result.stdout, "venv")
    new_packages = dist_infos(root.venvs_dir / third.venv_key)
    assert "zdprobe-2.0.dist-info" in new_packages and "zdprobe-1.0.dist-info" not in new_packages
    assert set(new_packages) - {"zdprobe-2.0.dist-info"} == set(old_packages) - {
        "zdprobe-1.0.dist-info"
    }
    assert (root_dir / "current" / ".venv").resolve() == root.venvs_dir / third.venv_key
    assert probe_version(root_dir / "current" / ".venv" / "bin" / "python") == "2.0"
    assert master_venv(server) == root.venvs_dir / third.venv_key
    assert master_cwd(server) == third.path
    # the previous release's venv: the same packages, and it served until the switch
    assert root.previous() == second and second.venv_key == old_venv.name
    assert dist_infos(old_venv) == old_packages
    assert probe_version(old_venv / "bin" / "python") == "1.0"
    began, switched = moments.venv_began, moments.switched
    assert began is not None and switched is not None and began < switched, moments
    during_build = [
        h for h in report.hits if began <= h.started and h.started + h.latency < switched
    ]
    assert during_build and {h.marker for h in during_build} == {"v2"}, report.summary()
    # KEEP_RELEASES = 1 keeps current and previous; the oldest release and its venv went
    assert "removed 1 release(s)" in step_line(result.stdout, "prune")
    assert [r.name for r in root.releases()] == [second.name, third.name]
    assert not first.path.exists() and not first_venv.exists()

    site.commit_release("v4")  # code-only: the venv reused; the one only v2 used goes
    result, report = deploy_under_load(site, root_dir, server, load_factory)
    assert result.returncode == 0, show(result)
    assert report.failed == 0 and report.last_marker == "v4", report.summary()
    fourth = root.current()
    assert fourth.venv_key == third.venv_key and root.previous() == third
    assert [r.name for r in root.releases()] == [third.name, fourth.name]
    assert sorted(os.listdir(root.venvs_dir)) == [third.venv_key]
    assert master_cwd(server) == fourth.path
