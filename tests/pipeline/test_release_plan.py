"""How the releases layout's steps plan themselves for ``deploy --dry-run`` (``Step.plan``), on
a layout made of real directories, links and metadata: the release a deploy would build, its
venv (reused or new, and why), the preflight rule, the switch and what KEEP_RELEASES would
prune, all without changing anything. No git and no Gunicorn: the steps that read them are
planned in the integration test (tests/releases/test_dry_run.py)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.test import override_settings

from django_zerodeploy.git import Git
from django_zerodeploy.pipeline import DeployOptions
from django_zerodeploy.pipeline.context import DeployContext
from django_zerodeploy.pipeline.project import Project
from django_zerodeploy.pipeline.steps import release_steps
from django_zerodeploy.pipeline.steps.releases_build import (
    BuildStep,
    ReleaseCollectStaticStep,
    ReleasePreflightStep,
    VenvStep,
)
from django_zerodeploy.pipeline.steps.releases_live import PruneStep, SwitchStep
from django_zerodeploy.pipeline.steps.releases_rollback import RollbackTargetStep
from django_zerodeploy.releases import layout, prune, switch, venvs
from django_zerodeploy.releases.layout import ReleasesRoot

REQUIREMENTS = "Django>=4.2\n"
WHEN = datetime(2026, 12, 3, 8, 0, 0, tzinfo=UTC)
TARGET = "c" * 40


def venv_for(root: ReleasesRoot, tree: Path, complete: bool = True) -> str:
    key = venvs.venv_key(tree, ["requirements.txt"], venvs.python_version())
    path = root.venvs_dir / key
    (path / "bin").mkdir(parents=True, exist_ok=True)
    (path / "bin" / "python").write_text("")
    if complete:
        (path / venvs.COMPLETE).write_text("{}\n")
    return key


def make_release(root: ReleasesRoot, sha: str, minute: int, requirements: str) -> layout.Release:
    release = root.release(layout.release_name(sha, WHEN.replace(minute=minute)))
    release.path.mkdir(parents=True)
    (release.path / "requirements.txt").write_text(requirements)
    os.symlink(root.venvs_dir / venv_for(root, release.path), release.path / layout.VENV_LINK)
    root.write_metadata(release.name, sha=sha, complete=True)
    return release


def snapshot(root: ReleasesRoot) -> list[str]:
    """Every path under ROOT, links as their targets: what a plan must leave as it was."""
    seen = []
    for folder, dirs, files in os.walk(root.path):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            seen.append(f"{path} -> {os.readlink(path)}" if path.is_symlink() else str(path))
    return sorted(seen)


@pytest.fixture
def layout_root(tmp_path):
    """Three complete releases (the oldest with its own venv), an orphan venv, v3 current."""
    root = ReleasesRoot(tmp_path / "srv")
    v1 = make_release(root, "a" * 40, 1, "Django>=4.0\n")
    v2 = make_release(root, "b" * 40, 2, REQUIREMENTS)
    v3 = make_release(root, "d" * 40, 3, REQUIREMENTS)
    (root.venvs_dir / "cpython-3.0.0-orphan" / "bin").mkdir(parents=True)
    switch.switch(root, v2)
    switch.switch(root, v3)  # v2 becomes previous
    return root, (v1, v2, v3)


def context(root: ReleasesRoot, live: Path, **options) -> DeployContext:
    project = Project(live, Path("."), "exampleproject.settings", sys.executable)
    ctx = DeployContext(DeployOptions(**options), project, Git(live), print, started=WHEN)
    ctx.releases, ctx.target_sha = root, TARGET
    return ctx


def test_prune_selection_is_what_prune_removes_and_planning_changes_nothing(layout_root):
    root, (v1, v2, v3) = layout_root
    before = snapshot(root)
    new = root.release(layout.release_name(TARGET, WHEN))
    planned = prune.select(root, 1, adding=new, adding_venv=v3.venv_key)
    # after the switch v3 is previous and the new release current: both kept, with their venv
    assert planned.releases == [v1.name, v2.name]
    assert sorted(planned.venvs) == sorted(["cpython-3.0.0-orphan", v1.venv_key])
    assert snapshot(root) == before
    now = prune.select(root, 1)
    assert now.releases == [v1.name] and snapshot(root) == before
    assert prune.prune(root, 1) == now  # the prune removes exactly what was selected
    assert [r.name for r in root.releases()] == [v2.name, v3.name]


def test_a_code_only_release_plans_its_name_the_reused_venv_and_the_switch(layout_root):
    root, (_, _, v3) = layout_root
    before = snapshot(root)
    ctx = context(root, v3.path)
    ctx.changed_files = ["notes/views.py"]
    build, venv = BuildStep().plan(ctx), VenvStep().plan(ctx)
    name = layout.release_name(TARGET, WHEN)
    assert build.facts["release"] == name and build.reason.startswith(f"releases/{name}:")
    assert venv.facts == {"key": v3.venv_key, "reuse": True, "requirements_changed": []}
    assert venv.reason == f"reuse {v3.venv_key}"
    switched = SwitchStep().plan(ctx)
    assert switched.facts == {"from": v3.name, "to": name}
    assert switched.reason == f"current: {v3.name} -> {name}"
    # no Gunicorn master found, so no readiness gate: the same rule the deploy applies
    preflight = ReleasePreflightStep().plan(ctx)
    assert (preflight.run, preflight.reason) == (True, "no readiness gate on the reload")
    collect = ReleaseCollectStaticStep().plan(ctx)
    assert (collect.run, collect.reason) == (False, "static sources unchanged")
    pruned = PruneStep().plan(ctx)
    assert pruned.facts == {"keep": 5, "releases": [], "venvs": ["cpython-3.0.0-orphan"]}
    with override_settings(ZERODEPLOY={"KEEP_RELEASES": 2}):
        pruned = PruneStep().plan(ctx)
    assert pruned.facts["releases"] == [root.releases()[0].name, root.releases()[1].name]
    assert "would remove 2 release(s)" in pruned.reason
    assert [s.plan(ctx).name for s in release_steps() if s.recorded][3:5] == ["build", "venv"]
    assert snapshot(root) == before and ctx.release is None and not ctx.venv_built


def test_a_requirement_change_plans_a_new_venv_and_what_it_brings(layout_root, tmp_path):
    root, (_, _, v3) = layout_root
    before = snapshot(root)
    ctx = context(root, v3.path)
    ctx.changed_files = ["requirements.txt"]
    # from git alone (no worktree of the target): a new venv, its key left to the deploy
    venv = VenvStep().plan(ctx)
    assert venv.facts == {"key": "", "reuse": False, "requirements_changed": ["requirements.txt"]}
    assert "requirements.txt changed" in venv.reason
    # with the target checked out beside (the dry run's worktree): its exact key
    target = tmp_path / "worktree"
    target.mkdir()
    (target / "requirements.txt").write_text(REQUIREMENTS + "zdprobe==2.0\n")
    ctx.worktree = target
    venv = VenvStep().plan(ctx)
    key = venvs.venv_key(target, ["requirements.txt"], venvs.python_version())
    assert venv.facts == {"key": key, "reuse": False, "requirements_changed": ["requirements.txt"]}
    assert venv.reason.startswith(f"build {key} with ")
    assert ReleasePreflightStep().plan(ctx).reason == "a new venv"
    collect = ReleaseCollectStaticStep().plan(ctx)
    assert (collect.run, collect.reason) == (True, "a new venv")
    # back to requirements a kept release has: its complete venv is reused
    (target / "requirements.txt").write_text("Django>=4.0\n")
    assert VenvStep().plan(ctx).facts["reuse"] is True
    assert snapshot(root) == before and not ctx.venv_built


def test_a_rollback_plans_the_previous_release_and_its_venv(layout_root):
    root, (_, v2, v3) = layout_root
    before = snapshot(root)
    ctx = context(root, v3.path, rollback=True)
    RollbackTargetStep().run(ctx)  # reads only: the plan runs it to know the target
    planned = RollbackTargetStep().plan(ctx)
    assert planned.facts == {
        "from": v3.name,
        "release": v2.name,
        "venv": v2.venv_key,
        "refused_migrations": [],
    }
    assert SwitchStep(record=False).plan(ctx).facts == {"from": v3.name, "to": v2.name}
    assert snapshot(root) == before
