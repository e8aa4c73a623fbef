"""The fetch step: what workers or HEALTHZ_URL report is never read by git as an option."""

from __future__ import annotations

import pytest

from django_zerodeploy.git import Git
from django_zerodeploy.pipeline import DeployOptions
from django_zerodeploy.pipeline.context import DeployContext
from django_zerodeploy.pipeline.project import Project
from django_zerodeploy.pipeline.steps.source import FetchStep, changed_files
from tests.support.repos import make_repo
from tests.support.site import git


@pytest.mark.django_db
def test_reported_releases_that_are_not_commit_ids_never_reach_git(tmp_path):
    path = tmp_path / "repo"
    shas = make_repo(path)
    written = tmp_path / "written-by-git"
    ctx = DeployContext(DeployOptions(), Project.current(), Git(path), print)
    ctx.serving = {f"--output={written}", shas[1]}
    ctx.head_sha, ctx.target_sha = shas[1], shas[2]
    step = FetchStep()
    ctx.baselines = step._baselines(ctx)
    assert ctx.baselines == {shas[1]}
    assert ctx.unknown_baseline  # git cannot tell what changed: everything is assumed to
    assert changed_files(ctx) == ["a.txt"] and not written.exists()
    assert step._previous(ctx) == shas[1]
    # a release named by a tag (RELEASE_ID) is still compared, as the commit it names
    git(path, "tag", "v0", shas[1])
    ctx.serving, ctx.unknown_baseline = {"v0"}, False
    assert step._baselines(ctx) == {shas[1]} and not ctx.unknown_baseline
