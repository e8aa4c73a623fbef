"""The deploy pipeline: ``run_deploy(DeployOptions(...))`` is what ``manage.py deploy``, the
admin and the webhook all call.

    steps.py    the step objects, read top to bottom (default_steps)
    runner.py   runs them, records them, rolls back on failure
    lock.py     one deploy at a time per checkout (fcntl.flock, holder info)
    records.py  Deployment/DeploymentStep rows as the deploy goes; history; bad releases
    plan.py     the dry run (build_plan)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models import Deployment
    from .plan import DeployPlan


@dataclass
class DeployOptions:
    """What to deploy and how; the command-line options, one field each."""

    ref: str | None = None
    force: bool = False
    install: bool = False
    collectstatic: bool = False
    no_reload: bool = False
    dry_run: bool = False
    rollback: str | bool | None = None  # True: the release before the current one
    wait_lock: float = 0
    trigger: str = "cli"
    user_id: int | None = None
    username: str = ""
    allow_unsafe_migrations: bool = False
    # a rollout runs the post-deploy migrations once, after every host serves the release
    skip_post_migrate: bool = False


@dataclass
class DeployResult:
    """The outcome: ``exit_code`` is what ``manage.py deploy`` exits with."""

    exit_code: int
    status: str
    message: str
    deployment_id: int | None
    target_sha: str | None
    previous_sha: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    mixed_window: float | None = None
    applied_migrations: list[str] = field(default_factory=list)
    duration: float | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["duration"] is not None:
            data["duration"] = round(data["duration"], 3)
        if data["mixed_window"] is not None:
            data["mixed_window"] = round(data["mixed_window"], 3)
        return data


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
    from .. import exit_codes
    from .runner import Runner

    echo = echo or _print
    if options.dry_run:
        plan = build_plan(options)
        echo(plan.as_text())
        return DeployResult(
            plan.exit_code, "dry_run", plan.as_text(), None, plan.target_sha, plan.previous_sha
        )
    try:
        runner = Runner(options, deployment, echo)
    except exit_codes.CommandFailure as exc:
        # e.g. an unusable RUNTIME_DIR: nothing ran, but a queued record must not stay open
        record_id = _fail_unstarted(deployment, exc.message)
        return DeployResult(exc.exit_code, "failed", exc.message, record_id, None, None)
    return runner.run()


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
    from .plan import build_plan as _build

    return _build(options, run_code=run_code, timeout=timeout)


def history(limit: int = 20) -> list[dict[str, Any]]:
    """Deployments, newest first, as ``deploy --history --json`` prints them."""
    from .records import history as _history

    return _history(limit)


__all__ = ["DeployOptions", "DeployResult", "run_deploy", "build_plan", "history"]
