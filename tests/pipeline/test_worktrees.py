"""Worktrees: a failed ``git worktree add`` still leaves the path to clean up."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from django.test import override_settings

from django_zerodeploy.git import GitError
from django_zerodeploy.pipeline.context import StepFailed
from django_zerodeploy.pipeline.steps.source import PrepareStep


def test_a_failed_worktree_add_still_leaves_the_path_to_clean_up(runtime):
    class HalfWorktree:
        def worktree_add(self, path: Path, sha: str) -> None:
            path.mkdir()  # what a killed ``git worktree add`` can leave
            raise GitError("git worktree failed: timed out")

    ctx = SimpleNamespace(target_sha="c" * 40, git=HalfWorktree(), worktree=None)
    with override_settings(ZERODEPLOY={"RUNTIME_DIR": str(runtime)}):
        with pytest.raises(StepFailed):
            PrepareStep().run(ctx)  # type: ignore[arg-type]
    assert ctx.worktree is not None and ctx.worktree.parent == runtime / "worktrees"
