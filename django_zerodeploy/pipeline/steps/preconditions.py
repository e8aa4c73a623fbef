"""Before anything changes: the lock, everything the deploy needs (each refusal a usage error),
and the recovery of deploys a kill interrupted."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil

import psutil

from ... import exit_codes, shared_paths
from ...conf import app_settings
from ...exit_codes import CommandFailure
from ...git import GitError, validate_ref
from .. import interrupted, serving, worktrees
from ..context import DeployContext, Outcome
from .base import Step, step_timeout


class LockStep(Step):
    name = "lock"
    blames_release = False

    def run(self, ctx: DeployContext) -> Outcome:
        ctx.lock.acquire(
            wait=ctx.options.wait_lock,
            on_wait=lambda holder: ctx.echo(
                f"  waiting up to {ctx.options.wait_lock:g} s for {holder.describe()}"
            ),
        )
        return Outcome(f"taken by pid {os.getpid()} ({ctx.lock.path})")


class EnvironmentStep(Step):
    """Everything a deploy needs before it changes anything; each refusal is a usage error."""

    name = "environment"
    blames_release = False
    dry_run_runs = True

    def run(self, ctx: DeployContext) -> Outcome:
        if not shutil.which("git"):
            raise CommandFailure("git is not on PATH: install git.", exit_codes.USAGE)
        details = [_branch(ctx), _clean(ctx)]
        ctx.shared = shared_paths.shared_paths(ctx.git, ctx.live)
        shared_paths.refuse_tracked(ctx.git, ctx.live, ctx.shared)
        details.append(f"{_free_mb(ctx)} MB free")
        if not ctx.options.no_reload:
            details += _serving_master(ctx)
        return Outcome(", ".join(details))


def _branch(ctx: DeployContext) -> str:
    """HEAD, the branch and the remote branch it deploys from (validated refs)."""
    try:
        ctx.head_sha = ctx.git.head()
    except GitError as exc:
        raise CommandFailure(
            f"{ctx.live} is not a git checkout with a commit: {exc}", exit_codes.USAGE
        ) from None
    ctx.branch = ctx.git.current_branch()
    if not ctx.branch:
        raise CommandFailure(
            f"{ctx.live} has a detached HEAD: check out the branch to deploy "
            "(git switch BRANCH) so that the deploy can move it.",
            exit_codes.USAGE,
        )
    ctx.remote = app_settings.REMOTE
    if app_settings.BRANCH:
        ctx.remote_branch = app_settings.BRANCH
    else:
        upstream = ctx.git.upstream(ctx.branch)
        if upstream:
            ctx.remote, ctx.remote_branch = upstream
        elif not ctx.options.ref and not ctx.options.rollback:
            raise CommandFailure(
                f"Branch {ctx.branch!r} has no upstream: set ZERODEPLOY['BRANCH'], run "
                f"git branch --set-upstream-to={ctx.remote}/{ctx.branch}, or pass --ref.",
                exit_codes.USAGE,
            )
    try:
        validate_ref(ctx.remote)
        if ctx.remote_branch:
            validate_ref(ctx.remote_branch)
    except GitError as exc:
        raise CommandFailure(f"Bad REMOTE or BRANCH setting: {exc}", exit_codes.USAGE) from None
    return f"branch {ctx.branch} -> {ctx.remote}/{ctx.remote_branch or ctx.options.ref}"


def _clean(ctx: DeployContext) -> str:
    modified = ctx.git.modified_tracked_files()
    if modified:
        shown = ", ".join(modified[:20]) + (
            f" and {len(modified) - 20} more" if len(modified) > 20 else ""
        )
        raise CommandFailure(
            f"Tracked files are modified in {ctx.live}: {shown}. Commit them upstream or "
            "restore them (git restore FILE) before deploying; the deploy never overwrites them.",
            exit_codes.USAGE,
        )
    return "clean"


def _free_mb(ctx: DeployContext) -> int:
    free_mb = min(
        psutil.disk_usage(str(ctx.live)).free,
        psutil.disk_usage(str(app_settings.runtime_dir)).free,
    ) // (1024 * 1024)
    if free_mb < app_settings.MIN_FREE_DISK_MB:
        raise CommandFailure(
            f"Only {free_mb} MB free (MIN_FREE_DISK_MB is {app_settings.MIN_FREE_DISK_MB}): "
            "free some disk space first.",
            exit_codes.USAGE,
        )
    return free_mb


def _serving_master(ctx: DeployContext) -> list[str]:
    ctx.master = serving.project_master()
    serving.require_reload_permission(ctx.master)
    # what is checked is what will serve: preflight, migrate, collectstatic and smoke run with
    # the environment the master (and so its workers) got, e.g. from systemd
    ctx.project = dataclasses.replace(ctx.project, base_env=ctx.master.child_environ)
    return [
        f"Gunicorn master {getattr(ctx.master, 'pid', '?')}",
        "release subprocesses " + ctx.master.environ_note,
    ]


# git's words when another fetch (e.g. a dry run's, which takes no lock) updates the same refs


class RecoverInterruptedStep(Step):
    """With the lock held: deploys still ``running`` died mid-way. Wait for steps they left
    running, mark them interrupted; this deploy then brings the site to a consistent release."""

    name = "recover"
    blames_release = False
    recorded = False

    def run(self, ctx: DeployContext) -> Outcome:
        if not ctx.lock.held:
            return Outcome()
        own = ctx.deployment.pk if ctx.deployment is not None else None
        stale = interrupted.interrupted_candidates(exclude=own)
        if stale:
            interrupted.wait_for_orphans([d.pid for d in stale if d.pid], step_timeout(), ctx.echo)
            ctx.interrupted = interrupted.mark_interrupted(stale, os.getpid())
            ctx.echo(
                "  found interrupted deploy(s) "
                + ", ".join(f"#{i}" for i in ctx.interrupted)
                + ": marked interrupted; this deploy brings the site to a consistent release"
            )
        with contextlib.suppress(GitError, OSError, CommandFailure):  # prepare says why
            worktrees.cleanup_worktrees(ctx.git)
        return Outcome()
