"""The bad-release rule and the commit ``--rollback`` goes back to."""

from __future__ import annotations

import pytest

from django_zerodeploy import exit_codes
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.git import Git
from django_zerodeploy.models import DeploymentStep
from django_zerodeploy.pipeline import (
    records,
    release_targets,
)
from django_zerodeploy.pipeline.steps.base import innocent_step_names
from tests.support.deployments import make


@pytest.mark.django_db
def test_rolled_back_release_is_bad_until_a_later_success():
    bad = make("rolled_back", "a" * 40, 10, message="Verify failed")
    assert release_targets.bad_release("a" * 40, innocent_step_names()) == bad
    make("succeeded", "a" * 40, 5)  # --force got it through
    assert release_targets.bad_release("a" * 40, innocent_step_names()) is None


@pytest.mark.django_db
def test_failure_before_the_release_steps_does_not_mark_it_bad():
    refused = make("failed", "b" * 40, 10, message="Cannot fetch origin")
    DeploymentStep.objects.create(deployment=refused, name="fetch", status="failed")
    cancelled = make("rolled_back", "b" * 40, 5, message=f"{records.CANCELLED} by the operator")
    assert cancelled and release_targets.bad_release("b" * 40, innocent_step_names()) is None
    broken = make("failed", "b" * 40, 1, message="Preflight failed")
    DeploymentStep.objects.create(deployment=broken, name="preflight", status="failed")
    assert release_targets.bad_release("b" * 40, innocent_step_names()) == broken


@pytest.fixture
def repo_git(tmp_path) -> tuple[Git, str]:
    """A real git repository with one commit: (its Git, the commit)."""
    from tests.support.repos import make_repo

    path = tmp_path / "repo"
    return Git(path), make_repo(path, commits=1)[0]


@pytest.mark.django_db
def test_rollback_target_is_the_success_before_the_serving_one(repo_git):
    git, commit = repo_git
    first = make("succeeded", "1" * 40, 30)
    make("rolled_back", "2" * 40, 20)
    make("succeeded", "3" * 40, 10)
    assert release_targets.rollback_target(True, {"3" * 40}, None, git)[0] == "1" * 40
    assert release_targets.rollback_target(str(first.pk), set(), None, git) == (
        "1" * 40,
        f"rollback to #{first.pk}",
    )
    assert release_targets.rollback_target(commit[:12], set(), None, git) == (
        commit,
        f"rollback to {commit[:12]}",
    )
    failed = make("failed", "4" * 40, 5)
    with pytest.raises(CommandFailure) as refused:
        release_targets.rollback_target(str(failed.pk), set(), None, git)
    assert refused.value.exit_code == exit_codes.USAGE
    with pytest.raises(CommandFailure) as unknown:
        release_targets.rollback_target("nope", set(), None, git)
    assert unknown.value.exit_code == exit_codes.USAGE
    assert "no such deployment id or commit" in unknown.value.message


@pytest.mark.django_db
def test_rollback_without_history_says_what_to_do(repo_git):
    with pytest.raises(CommandFailure) as refused:
        release_targets.rollback_target(True, {"9" * 40}, None, repo_git[0])
    assert "--rollback ID" in refused.value.message
