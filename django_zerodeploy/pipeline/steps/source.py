"""The target: fetched and resolved (with the releases the live state may hold, to diff against),
the record opened on it, and a worktree of it beside the live checkout."""

from __future__ import annotations

import re
import time

from ... import exit_codes
from ...exit_codes import CommandFailure
from ...git import GitError, is_sha
from .. import interrupted, release_targets, serving, worktrees
from ..context import DeployContext, NothingToDeploy, Outcome, StepFailed
from .base import Step, innocent_step_names

_REF_LOCK_RACE = re.compile(
    r"cannot lock ref|\.lock'?: File exists|some local refs could not be updated", re.IGNORECASE
)


def _fetch(ctx: DeployContext) -> None:
    """``git fetch``, once more after a pause if a concurrent fetch held a ref lock."""
    try:
        ctx.git.fetch(ctx.remote)
    except GitError as exc:
        if not _REF_LOCK_RACE.search(str(exc)):
            raise
        time.sleep(1)
        ctx.git.fetch(ctx.remote)


class FetchStep(Step):
    name = "fetch"
    blames_release = False
    decides_target = True

    def run(self, ctx: DeployContext) -> Outcome:
        options = ctx.options
        if ctx.fetch:
            try:
                _fetch(ctx)
            except GitError as exc:
                if not options.rollback:
                    raise StepFailed(f"Cannot fetch {ctx.remote}: {exc}") from None
                # a rollback goes back to a commit the checkout already has: no network needed
                ctx.echo(
                    f"  warning: cannot fetch {ctx.remote} ({exc}); rolling back with local commits"
                )
        if ctx.options.no_reload:
            ctx.serving, ctx.serving_source = ({ctx.head_sha} if ctx.head_sha else set()), "HEAD"
        else:
            ctx.serving, ctx.serving_source = serving.what_serves(ctx.master, ctx.head_sha)
        ctx.target_sha, ctx.ref = self._target(ctx)
        ctx.target_subject = ctx.git.commit(ctx.target_sha).subject
        ctx.previous_sha = self._previous(ctx)
        ctx.baselines = self._baselines(ctx)
        short = ctx.target_sha[:10]
        if (
            not options.force
            and not ctx.interrupted
            and ctx.serving == {ctx.target_sha}
            and ctx.head_sha == ctx.target_sha
        ):
            raise NothingToDeploy(
                f"Nothing to deploy: {short} ({ctx.target_subject}) already serves "
                f"(according to the {ctx.serving_source})."
            )
        if not options.force and not options.rollback:
            bad = release_targets.bad_release(ctx.target_sha, innocent_step_names())
            if bad is not None:
                raise StepFailed(
                    f"Release {short} was rolled back by deployment #{bad.pk} ({bad.message.strip()[:200]}). "
                    "Push a newer commit, or use --force to deploy it anyway."
                )
        ctx.commits = []
        if ctx.previous_sha:
            try:
                ctx.commits = ctx.git.log(ctx.previous_sha, ctx.target_sha, limit=200)
            except GitError:
                ctx.commits = []
        ctx.changed_files = changed_files(ctx)
        where = ", ".join(sorted(s[:10] for s in ctx.serving)) or "nothing"
        return Outcome(
            f"{ctx.ref}: {where} -> {short} ({ctx.target_subject}); "
            f"{len(ctx.commits)} commit(s), {len(ctx.changed_files)} file(s) changed"
        )

    def _target(self, ctx: DeployContext) -> tuple[str, str]:
        options = ctx.options
        if options.rollback:
            sha, label = release_targets.rollback_target(
                options.rollback, ctx.serving, ctx.head_sha, ctx.git
            )
            return sha, label
        if options.ref:
            for candidate in (f"{ctx.remote}/{options.ref}", options.ref):
                try:
                    return ctx.git.resolve(candidate), options.ref
                except GitError:
                    continue
            raise CommandFailure(
                f"--ref {options.ref!r} names no branch, tag or commit in {ctx.remote} or locally.",
                exit_codes.USAGE,
            )
        ref = f"{ctx.remote}/{ctx.remote_branch}"
        try:
            return ctx.git.resolve(ref), ref
        except GitError:
            raise CommandFailure(
                f"{ref} does not exist after fetching: check REMOTE and BRANCH.", exit_codes.USAGE
            ) from None

    def _baselines(self, ctx: DeployContext) -> set[str]:
        """Releases the live state may hold, as full commit ids. What workers or HEALTHZ_URL
        report is not trusted: a name (a RELEASE_ID tag) is resolved as a validated ref; what
        git cannot resolve means git cannot tell what changed, so everything is assumed to."""
        shas = set()
        for found in (*ctx.serving, ctx.head_sha, *interrupted.interrupted_shas(ctx.interrupted)):
            if not found:
                continue
            if is_sha(found):
                shas.add(found)
                continue
            try:
                shas.add(ctx.git.resolve(found))
            except GitError:
                ctx.unknown_baseline = True
        return shas

    def _previous(self, ctx: DeployContext) -> str | None:
        """The release to roll back to: the one serving, if git knows it; else HEAD."""
        for sha in sorted(ctx.serving):
            if sha != ctx.target_sha and is_sha(sha) and _is_commit(ctx, sha):
                return sha
        if ctx.serving == {ctx.target_sha}:
            return ctx.target_sha
        return ctx.head_sha


def changed_files(ctx: DeployContext) -> list[str]:
    """The files the target changes against every release the live state may hold."""
    changed: set[str] = set()
    for base in ctx.baselines:
        if base == ctx.target_sha:
            continue
        try:
            changed.update(ctx.git.changed_files(base, ctx.target_sha))
        except GitError:
            ctx.unknown_baseline = True
    return sorted(changed)


def _is_commit(ctx: DeployContext, sha: str) -> bool:
    try:
        return ctx.git.resolve(sha) == sha
    except GitError:
        return False


class OpenRecordStep(Step):
    """The deploy's record opens here (the target is known, nothing changed yet): created, or
    the queued one taken over, with the steps done so far. The runner keeps the record."""

    name = "record"
    blames_release = False
    opens_record = True
    recorded = False

    def run(self, ctx: DeployContext) -> Outcome:
        ctx.open_record()
        return Outcome()


class PrepareStep(Step):
    name = "prepare"
    blames_release = False

    def run(self, ctx: DeployContext) -> Outcome:
        path = worktrees.worktree_path(ctx.target_sha)
        try:
            linked = worktrees.add_worktree(ctx, path)  # what the preflight checks runs there
        except GitError as exc:
            raise StepFailed(f"Cannot prepare a worktree of {ctx.target_sha[:10]}: {exc}") from None
        return Outcome(
            f"worktree {path}; linked {len(linked)} live path(s)",
            "linked from the live checkout:\n" + "\n".join(linked) if linked else "",
            0,
        )
