"""``deploy --dry-run``: what a deploy would do, decided by the same step objects, changing
nothing (no record, no change to the live tree, the database or the processes).

It never takes the deploy lock: a dry run (the admin's confirmation page computes one on every
view) must never make a real deploy that starts meanwhile find the lock taken and exit 4. When
a deploy runs, the plan says so and uses the refs fetched last; otherwise it fetches (which moves
remote-tracking refs only). With ``run_code`` it reads the pending migrations by running the
target's code from a temporary worktree outside the checkout, removed afterwards; without it
(the admin's GET: a link must not run the code of any branch) it gives git facts only.

The steps are those of the layout the project runs in (``layout_steps``, which the runner uses
too): each plans itself
(``Step.plan``) from what the steps before it found, in the releases layout the release it
would build, its venv, the switch of ``current`` and what KEEP_RELEASES would prune.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import exit_codes
from ..conf import app_settings
from ..exit_codes import CommandFailure
from ..git import Git, GitError
from ..releases import venvs
from . import migrations, worktrees
from .context import DeployContext, NothingToDeploy, PlannedStep, StepFailed
from .lock import deploy_lock
from .options import DeployOptions
from .project import Project, current_layout
from .steps import layout_steps
from .steps.base import Step
from .steps.source import changed_files

__all__ = ["DeployPlan", "PlannedStep", "plan_deploy"]


@dataclass
class DeployPlan:
    ref: str = ""
    target_sha: str | None = None
    target_subject: str = ""
    previous_sha: str | None = None
    head_sha: str | None = None
    branch: str | None = None
    serving: list[str] = field(default_factory=list)
    serving_source: str = ""
    nothing_to_deploy: bool = False
    refused: str = ""
    commits: list[list[str]] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)
    steps: list[PlannedStep] = field(default_factory=list)
    pending_migrations: list[dict[str, Any]] = field(default_factory=list)
    migration_errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # "releases" and, in that layout, its root, the current release and its venv
    layout: dict[str, Any] = field(default_factory=dict)
    exit_code: int = exit_codes.OK  # what the deploy itself would most likely return

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_text(self) -> str:
        short = (self.target_sha or "?")[:10]
        lines = ["Dry run: nothing was changed."]
        if self.branch:
            lines.append(
                f"Live checkout on {self.branch} at {(self.head_sha or '?')[:10]}; serving "
                f"{', '.join(s[:10] for s in self.serving) or 'unknown'} (from {self.serving_source or '?'})."
            )
        if self.layout.get("kind") == "releases":
            lines.append(
                f"Releases layout in {self.layout['root']}: current is {self.layout['current']} "
                f"(venv {self.layout['venv']})."
            )
        if self.target_sha:
            lines.append(f"Target: {self.ref} = {short} ({self.target_subject})")
        for problem in self.problems:
            lines.append(f"Problem: {problem}")
        if self.refused:
            lines.append(f"The deploy would refuse: {self.refused}")
        if self.nothing_to_deploy:
            lines.append("Nothing to deploy: the target already serves.")
        if self.commits:
            lines.append(f"Commits ({len(self.commits)}):")
            lines += [f"  {sha[:10]} {subject}" for sha, subject in self.commits[:50]]
        if self.changed_files:
            lines.append(f"Changed files ({len(self.changed_files)}):")
            lines += [f"  {name}" for name in self.changed_files[:100]]
            if len(self.changed_files) > 100:
                lines.append(f"  ... and {len(self.changed_files) - 100} more")
        if self.steps:
            lines.append("Steps:")
            for step in self.steps:
                lines.append(f"  {step.name:<14} {'run' if step.run else 'skip':<5} {step.reason}")
        if self.pending_migrations:
            lines.append("Pending migrations:")
            for migration in self.pending_migrations:
                ack = " (acknowledged)" if migration.get("acknowledged") else ""
                lines.append(
                    f"  {migration['app']}.{migration['name']} [{migration.get('stage', 'pre')}-deploy]{ack}"
                )
                for op in migration.get("operations") or []:
                    lines.append(
                        f"    {op.get('classification', '?'):<8} {op.get('operation', '')}"
                        + (f" - {op['reason']}" if op.get("reason") else "")
                    )
        elif self.target_sha and not self.nothing_to_deploy:
            lines.append("Pending migrations: none")
        for error in self.migration_errors:
            lines.append(f"Migration plan: {error}")
        for note in self.notes:
            lines.append(f"Note: {note}")
        return "\n".join(lines)


def plan_deploy(
    options: DeployOptions,
    *,
    run_code: bool = True,
    timeout: float | None = None,
) -> DeployPlan:
    """What ``deploy`` with ``options`` would do now, with the steps ``layout_steps`` gives
    for them (the layout's list, as the runner uses). ``run_code=False``: no worktree, no
    code of the target run (the migration plan is left to the deploy); ``timeout`` bounds
    every command, git and the migration plan (a page must answer before its worker is
    killed; default: git's and STEP_TIMEOUT)."""
    plan = DeployPlan()
    try:
        steps = layout_steps(options)  # e.g. a LAYOUT setting that does not fit the checkout
    except CommandFailure as exc:
        plan.problems.append(exc.message)
        plan.exit_code = exc.exit_code
        return plan
    project = Project.current()
    notes: list[str] = []
    lock = deploy_lock(app_settings.runtime_dir)
    git = Git(project.repo_dir) if timeout is None else Git(project.repo_dir, timeout)
    ctx = DeployContext(options, project, git, notes.append, lock=lock)
    holder = lock.running_holder()  # reads the holder file only; never touches the flock
    if holder is not None:
        # a fetch now could race the deploy's own fetch for the remote-tracking refs
        notes.append(
            f"A deploy is running now: {holder.describe()}. The plan uses the refs fetched "
            "last (no fetch)."
        )
        plan.exit_code = exit_codes.LOCKED
        ctx.fetch = False
    try:
        _plan(plan, ctx, steps, run_code, timeout)
    finally:
        if ctx.worktree is not None:
            worktrees.remove_worktree(ctx.git, ctx.worktree)
    plan.notes += notes
    return plan


def _target_step(steps: list[Step]) -> int:
    """The index of the step that decides the target (the record opens after it)."""
    return next(i for i, step in enumerate(steps) if step.decides_target)


def _plan(
    plan: DeployPlan, ctx: DeployContext, steps: list[Step], run_code: bool, timeout: float | None
) -> None:
    """Run what only reads (the environment, the target), then let every step plan itself."""
    target = _target_step(steps)
    for step in steps[:target]:
        if not step.dry_run_runs:
            continue
        try:
            step.run(ctx)
        except CommandFailure as exc:
            plan.problems.append(exc.message)
            plan.exit_code = exc.exit_code
            if not ctx.head_sha or not ctx.branch:
                return
    plan.branch, plan.head_sha = ctx.branch, ctx.head_sha
    plan.layout = _layout_facts()
    try:
        steps[target].run(ctx)
    except NothingToDeploy:
        plan.nothing_to_deploy = True
    except StepFailed as exc:
        plan.refused = exc.message
        plan.exit_code = exit_codes.FAILED
    except CommandFailure as exc:
        plan.problems.append(exc.message)
        plan.exit_code = exc.exit_code
        return
    plan.ref, plan.target_sha, plan.target_subject = ctx.ref, ctx.target_sha, ctx.target_subject
    plan.previous_sha, plan.serving, plan.serving_source = (
        ctx.previous_sha,
        sorted(ctx.serving),
        ctx.serving_source,
    )
    if not ctx.target_sha:
        return  # refused before a target was known: nothing to plan the steps on
    shown = [step for step in steps if step.recorded]
    if plan.nothing_to_deploy:
        plan.steps = [
            PlannedStep(s.name, steps.index(s) <= target, "nothing to deploy") for s in shown
        ]
        return
    _commits(plan, ctx)
    if not run_code:
        plan.notes.append(NO_CODE_NOTE)
        plan.steps = [step.plan_without_code(ctx) for step in shown]
        return
    if any(step.plans_migrations for step in steps):  # a releases rollback migrates nothing
        _plan_migrations(plan, ctx, timeout)
    plan.steps = [step.plan(ctx) for step in shown]


def _commits(plan: DeployPlan, ctx: DeployContext) -> None:
    if not ctx.commits and ctx.previous_sha and ctx.target_sha:
        with contextlib.suppress(GitError):
            ctx.commits = ctx.git.log(ctx.previous_sha, ctx.target_sha)
    if not ctx.changed_files:  # the fetch stopped before it (nothing to deploy, refused)
        ctx.changed_files = changed_files(ctx)
    plan.commits = [[c.sha, c.subject] for c in ctx.commits]
    plan.changed_files = ctx.changed_files


def _layout_facts() -> dict[str, Any]:
    layout = current_layout()
    if layout.root is None:
        return {"kind": layout.kind}
    current = layout.root.current()
    return {
        "kind": layout.kind,
        "root": str(layout.root.path),
        "current": current.name if current else None,
        "venv": current.venv_key if current else None,
        "python": venvs.python_version(),
    }


NO_CODE_NOTE = (
    "The migration plan is not computed on this page: it runs the target's code. It is "
    "computed when you ask for it (a confirmed POST) and by the deploy itself."
)


def _plan_migrations(plan: DeployPlan, ctx: DeployContext, timeout: float | None) -> None:
    """Run the target's own code from a worktree to list its pending migrations."""
    path = worktrees.worktree_path(ctx.target_sha, "plan-")
    try:
        worktrees.add_worktree(ctx, path)
    except (GitError, CommandFailure) as exc:
        plan.problems.append(f"cannot check the target out beside the live tree: {exc}")
        worktrees.remove_worktree(ctx.git, path)
        ctx.worktree = None  # the steps below read the live tree instead
    else:
        found = migrations.plan(
            ctx.project,
            ctx.worktree,
            allow_unsafe=ctx.options.allow_unsafe_migrations,
            timeout=timeout,
        )
        ctx.pending = found.pending
        plan.pending_migrations = [m.as_dict() for m in found.pending]
        plan.migration_errors = found.errors
        if not found.ok and plan.exit_code == exit_codes.OK:
            plan.exit_code = exit_codes.FAILED
