"""The live tree and the schema: the checkout that moves the live branch, the pre-deploy
migrations while the previous release serves, and the contract migrations once it no longer does."""

from __future__ import annotations

import time
from typing import Any

from ... import exit_codes, proc
from ...git import GitError
from .. import migrations
from ..context import DeployContext, Outcome, PlannedStep, StepFailed
from .base import Step, failure_from, step_timeout


class CheckoutStep(Step):
    name = "checkout"
    changes_live = True
    undo_rank = 1

    def plan(self, ctx: DeployContext) -> PlannedStep:
        return PlannedStep(self.name, True, "git reset --keep in the live tree")

    def run(self, ctx: DeployContext) -> Outcome:
        ctx.mixed_window_started = time.monotonic()
        if ctx.head_sha == ctx.target_sha:
            ctx.checked_out = True
            return Outcome(f"{ctx.branch} already at {ctx.target_sha[:10]}")
        ctx.checked_out = True
        try:
            ctx.git.move_branch_to(ctx.target_sha)
        except GitError as exc:
            raise StepFailed(f"git reset --keep {ctx.target_sha[:10]} failed: {exc}") from None
        return Outcome(f"{ctx.branch} at {ctx.target_sha[:10]} (git reset --keep)")

    def undo(self, ctx: DeployContext) -> Outcome | None:
        if not ctx.checked_out or not ctx.previous_sha:
            return None
        try:
            head = ctx.git.head()
            if head != ctx.previous_sha:
                ctx.git.move_branch_to(ctx.previous_sha)
        except GitError as exc:
            raise StepFailed(
                f"Cannot check out {ctx.previous_sha[:10]} again: {exc}", exit_code=exit_codes.DOWN
            ) from None
        return Outcome(f"{ctx.branch} back at {ctx.previous_sha[:10]}")


class MigrateStep(Step):
    """Applies the pre-deploy migrations while the previous release still serves."""

    name = "migrate"
    changes_live = True  # the schema
    plans_migrations = True
    stage = "pre"
    conditional = True

    def pending(self, ctx: DeployContext) -> list[migrations.PendingMigration]:
        """The pending migrations of this step's stage."""
        return ctx.pending_post if self.stage == "post" else ctx.pending_pre

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        pending = self.pending(ctx)
        if not pending:
            return (
                False,
                "no unapplied migrations" if self.stage == "pre" else "no post-deploy migrations",
            )
        return True, f"{len(pending)} unapplied: " + ", ".join(m.label for m in pending)[:300]

    def plan_without_code(self, ctx: DeployContext) -> PlannedStep:
        """From git alone: a migration step depends on the migration files."""
        changed = [f for f in ctx.changed_files if "/migrations/" in f"/{f}" and f.endswith(".py")]
        if changed:
            return PlannedStep(
                self.name, True, f"{len(changed)} migration file(s) changed; the deploy plans them"
            )
        return PlannedStep(self.name, False, "no migration file changed (the deploy checks)")

    def command(self, ctx: DeployContext) -> list[str]:
        """The migrate command, run in the live tree (holding the new code by now)."""
        if migrations.safety_available():
            return ctx.project.manage(
                ctx.live, migrations.SAFETY_COMMAND, "apply", "--stage", self.stage
            )
        return ctx.project.manage(ctx.live, "migrate", "--noinput")

    def run(self, ctx: DeployContext) -> Outcome:
        pending = self.pending(ctx)
        result = proc.run(
            self.command(ctx),
            cwd=ctx.project.live_dir,
            env=ctx.project.env(ctx.live),
            timeout=step_timeout(),
        )
        applied = migrations.applied_from_output(result.stdout)
        if not result.ok:
            applied = self._applied_after_failure(ctx, pending, applied)
        ctx.applied_migrations.extend(a for a in applied if a not in ctx.applied_migrations)
        if not result.ok:
            raise failure_from(result, "migrate")  # the applied ones are listed in the outcome
        return Outcome(f"applied {', '.join(applied) or 'none'}", result.output, 0)

    def _applied_after_failure(
        self, ctx: DeployContext, pending: list[Any], seen: list[str]
    ) -> list[str]:
        """Which of the pending migrations the database holds now (asked, not guessed)."""
        after = migrations.plan(ctx.project, ctx.live, allow_unsafe=True)
        if not after.ok:
            return seen
        still = {m.label for m in after.pending}
        return [m.label for m in pending if m.label not in still]


class PostDeployMigrateStep(MigrateStep):
    """Contract migrations, once no old code serves any more. A failure here leaves the new
    release serving: rolling the code back would put old code on a contracted schema."""

    name = "post_migrate"
    stage = "post"
    rollback_on_failure = False

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        if ctx.options.skip_post_migrate and self.pending(ctx):
            return False, "rollout: run once every host serves the new release"
        return super().should_run(ctx)

    def command(self, ctx: DeployContext) -> list[str]:
        return ctx.project.manage(ctx.live, migrations.SAFETY_COMMAND, "apply", "--stage", "post")

    def run(self, ctx: DeployContext) -> Outcome:
        try:
            return super().run(ctx)
        except StepFailed as failure:
            failure.exit_code = exit_codes.DOWN
            failure.message += (
                ". The new release serves; the post-deploy migrations need a person "
                "(the code was not rolled back: the previous release expects the old schema)."
            )
            raise
