"""The deploy pipeline: ``run_deploy(DeployOptions(...))`` is what ``manage.py deploy``, the
admin and the webhook all call.

    steps/              the step objects by family; the lists read top to bottom
    runner.py           runs them, records them, rolls back on failure
    lock.py             one deploy at a time per checkout (fcntl.flock, holder info)
    records.py          the Deployment/DeploymentStep rows, written as the deploy goes
    interrupted.py      deploys a kill interrupted, found and marked by the next one
    worktrees.py        the target's worktrees beside the live checkout
    release_targets.py  the bad-release rule and the commit --rollback goes to
    deploy_history.py   deploy --history
    plan.py             the dry run (plan_deploy, which build_plan calls)
    options.py          DeployOptions (checked when made) and DeployResult
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..exit_codes import CommandFailure
from .options import DeployOptions, DeployResult, validate_options

if TYPE_CHECKING:
    from ..models import Deployment
    from .plan import DeployPlan


def _print(line: str) -> None:
    print(line, flush=True)


def run_deploy(
    options: DeployOptions,
    *,
    deployment: Deployment | None = None,
    echo: Callable[[str], None] | None = None,
) -> DeployResult:
    """Deploy. ``deployment``: a ``queued`` record to run into (admin, webhook); None creates
    one. Expected failures never raise: they come back as a result with an exit code."""
    from .runner import Runner  # the runner imports the models: not at the package's import

    echo = echo or _print
    if options.dry_run:
        plan = build_plan(options)
        echo(plan.as_text())
        return DeployResult(
            plan.exit_code, "dry_run", plan.as_text(), None, plan.target_sha, plan.previous_sha
        )
    try:
        runner = Runner(options, deployment, echo)
    except CommandFailure as exc:
        # e.g. an unusable RUNTIME_DIR: nothing ran, but a queued record must not stay open
        return not_started(deployment, exc)
    return runner.run()


def not_started(deployment: Deployment | None, failure: CommandFailure) -> DeployResult:
    """The result of a deploy that could not start (an unusable RUNTIME_DIR, options a queued
    record carries that are refused): its queued record, if any, is marked failed."""
    record_id = _fail_unstarted(deployment, failure.message)
    return DeployResult(failure.exit_code, "failed", failure.message, record_id, None, None)


def _fail_unstarted(deployment: Deployment | None, message: str) -> int | None:
    """Mark the queued (or just claimed) record of a deploy that could not start as failed."""
    from django.utils import timezone

    from ..models import Deployment
    from ..notify import notify_admins
    from ..proc import redact

    if deployment is None or not deployment.pk:
        return None
    message = redact(message)
    updated = Deployment.objects.filter(
        pk=deployment.pk, status__in=[Deployment.Status.QUEUED, Deployment.Status.RUNNING]
    ).update(status=Deployment.Status.FAILED, finished_at=timezone.now(), message=message)
    if updated:
        notify_admins(f"Deploy #{deployment.pk} failed", message)
    return deployment.pk


def build_plan(
    options: DeployOptions, *, run_code: bool = True, timeout: float | None = None
) -> DeployPlan:
    """The dry run: commits, changed files, steps run or skipped and why, pending migrations
    (only with ``run_code``: they are read by running the target's code)."""
    from .plan import plan_deploy  # the steps import the models: not at the package's import

    return plan_deploy(options, run_code=run_code, timeout=timeout)


def history(limit: int = 20) -> list[dict[str, Any]]:
    """Deployments, newest first, as ``deploy --history --json`` prints them."""
    from .deploy_history import history as _history  # the models: not at the package's import

    return _history(limit)


__all__ = [
    "DeployOptions",
    "DeployResult",
    "validate_options",
    "run_deploy",
    "not_started",
    "build_plan",
    "history",
]
