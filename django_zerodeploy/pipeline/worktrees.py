"""The worktrees of the target beside the live checkout (in the runtime directory, named
``<sha>-<pid>``): made by one function, removed even when half made, and the ones of deploys
that are gone cleaned up."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from .. import exit_codes, shared_paths
from ..conf import app_settings
from ..exit_codes import CommandFailure
from ..git import Git
from ..shared_paths import unlink_from

if TYPE_CHECKING:
    from .context import DeployContext


def worktrees_dir() -> Path:
    path = app_settings.runtime_dir / "worktrees"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:  # e.g. a file in the way, a full disk
        raise CommandFailure(
            f"Cannot use {path} for the release's worktree: {exc.strerror or exc}.",
            exit_codes.USAGE,
        ) from None
    return path


def worktree_path(sha: str, prefix: str = "") -> Path:
    """Where this process puts its worktree of ``sha`` (``prefix``: whose, e.g. a plan's)."""
    return worktrees_dir() / f"{prefix}{sha[:12]}-{os.getpid()}"


def add_worktree(ctx: DeployContext, path: Path) -> list[str]:
    """A worktree of the target at ``path``, the live checkout's own state (.env, SQLite, media,
    static, venv...) linked into it: what runs there sees what the workers will run with.
    ``ctx.worktree`` is set first: a failed or timed-out ``worktree add`` may leave half a
    worktree to remove. Returns the linked paths; raises GitError."""
    ctx.worktree = path
    ctx.git.worktree_add(path, ctx.target_sha or "")
    return shared_paths.link_into(path, ctx.live, ctx.shared or shared_paths.SharedPaths())


def cleanup_worktrees(git: Git) -> list[str]:
    """Remove worktrees left by deploys that are gone (named ``<sha>-<pid>``)."""
    removed = []
    for path in sorted(worktrees_dir().iterdir()):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and psutil.pid_exists(int(pid)):
            continue
        remove_worktree(git, path)
        removed.append(path.name)
    return removed


def remove_worktree(git: Git, path: Path) -> None:
    """Remove a worktree of ours, even one that ``git worktree add`` left half made; the links
    to live state go first, so that nothing can delete through them."""
    if path.is_dir():
        unlink_from(path)
    git.worktree_remove(path)  # also prunes what git knew of it
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
