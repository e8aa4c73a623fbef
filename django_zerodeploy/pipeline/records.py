"""Deployment records, written as the deploy goes (a killed deploy leaves an honest ``running``
row, which the next deploy marks ``interrupted``): the row and its steps, kept in step with the
run by the ``Recorder``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, transaction

from .. import proc
from ..conf import app_settings
from ..models import Deployment, DeploymentStep
from ..osutil import os_user

Status = Deployment.Status
StepStatus = DeploymentStep.Status


CANCELLED = (
    "Cancelled"  # message prefix of a deploy stopped by the operator (not the release's fault)
)


# the rows of a rollback's undos are named ``rollback:STEP`` (never the release's fault)
UNDO_PREFIX = "rollback"


def hostname() -> str:
    """This host's name in the records (ZERODEPLOY["HOST"]): hosts sharing a database must not
    mark each other's running deploys."""
    return app_settings.host


@dataclass
class StepResult:
    """One line of the step table."""

    name: str
    status: str  # DeploymentStep.Status value
    detail: str = ""
    duration: float | None = None
    returncode: int | None = None
    output: str = ""
    started_at: Any = None

    def as_dict(self) -> dict[str, Any]:
        """For DeployResult.steps, which --json prints and django-q2 stores: redacted."""
        return {
            "name": self.name,
            "status": self.status,
            "detail": proc.redact(self.detail),
            "duration": None if self.duration is None else round(self.duration, 3),
            "returncode": self.returncode,
        }


@dataclass
class Recorder:
    """Keeps the Deployment row and its steps in step with the run. Database errors are
    reported once and never stop the deploy: the site matters more than its log."""

    deployment: Deployment | None = None
    warn: Callable[[str], None] = print
    rows: dict[int, DeploymentStep] = field(default_factory=dict)
    deferred: dict[int, StepResult] = field(default_factory=dict)  # skipped, not written yet
    opened: bool = False
    _warned: bool = False

    def _safe(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except DatabaseError as exc:
            if not self._warned:
                self._warned = True
                self.warn(f"  warning: cannot write the deployment record: {exc}")
            return None

    def open(
        self, values: dict[str, Any], planned: list[str], done: list[StepResult]
    ) -> Deployment | None:
        """Create (or take over a queued) record with one row per planned step: the steps
        already done as they ended, the others pending. One transaction."""

        def write() -> Deployment:
            with transaction.atomic():
                if self.deployment is None:
                    deployment = Deployment.objects.create(**values)
                else:
                    deployment = self.deployment
                    for key, value in values.items():
                        setattr(deployment, key, value)
                    deployment.save()
                    deployment.steps.all().delete()
                made = []
                for position, name in enumerate(planned):
                    if position < len(done):
                        made.append(
                            DeploymentStep(
                                deployment=deployment,
                                position=position,
                                **self._values(done[position]),
                            )
                        )
                    else:
                        made.append(
                            DeploymentStep(deployment=deployment, position=position, name=name)
                        )
                rows = DeploymentStep.objects.bulk_create(made)
            self.deployment = deployment
            self.rows = dict(enumerate(rows))
            return deployment

        result = self._safe(write)
        self.opened = result is not None
        for position in range(len(planned), len(done)):
            self.save_step(position, done[position])
        return result

    def update(self, **values: Any) -> None:
        deployment = self.deployment
        if not self.opened or deployment is None or deployment.pk is None:
            return
        for key, value in values.items():
            setattr(deployment, key, value)
        self._safe(lambda: deployment.save(update_fields=list(values)))

    @staticmethod
    def _values(step: StepResult) -> dict[str, Any]:
        keep = int(app_settings.KEEP_OUTPUT_BYTES)
        return {
            "name": step.name[:64],
            "status": step.status,
            "detail": proc.redact(step.detail)[:500],
            "duration": step.duration,
            "returncode": step.returncode,
            "output": proc.tail(proc.redact(step.output), keep),
            "started_at": step.started_at,
        }

    def save_step(self, position: int, step: StepResult) -> None:
        """Create or update the row of the step at ``position`` (once the record is open). A
        skipped step changed nothing, so its row is written with the next write, in the same
        transaction: one commit (an fsync on SQLite) less per skipped step."""
        if not self.opened or self.deployment is None or self.deployment.pk is None:
            return
        self.deferred[position] = step
        if step.status != StepStatus.SKIPPED:
            self._safe(self._write_deferred)

    def _write_deferred(self) -> None:
        with transaction.atomic():
            for position, step in sorted(self.deferred.items()):
                row = self.rows.get(position) or DeploymentStep(deployment=self.deployment)
                for key, value in dict(self._values(step), position=position).items():
                    setattr(row, key, value)
                row.save()
                self.rows[position] = row
        self.deferred.clear()

    def note_release(self, release_dir: str, venv_key: str) -> None:
        """The releases layout's release directory and venv key, written when the step that
        learnt them ends: a deploy killed later leaves a row naming the release it was making."""
        deployment = self.deployment
        if deployment is None:
            return
        values = {"release_dir": release_dir, "venv_key": venv_key}
        changed = {k: v for k, v in values.items() if (getattr(deployment, k) or "") != v}
        if changed:
            self.update(**changed)

    def drop_pending(self) -> None:
        """Steps that never ran (nothing to deploy, or a failure before them) are removed;
        skipped steps not written yet are written first."""
        if not self.opened or self.deployment is None or self.deployment.pk is None:
            return
        self._safe(self._write_deferred)
        self._safe(lambda: self.deployment.steps.filter(status=StepStatus.PENDING).delete())


def new_record_values(options: Any, started: Any) -> dict[str, Any]:
    return {
        "status": Status.RUNNING,
        "trigger": options.trigger or "cli",
        "user_id": options.user_id,
        "username": (options.username or os_user())[:150],
        "host": hostname()[:255],
        "pid": os.getpid(),
        "options": options_dict(options),
        "started_at": started,
        "message": "",
    }


def options_dict(options: Any) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(options)
    data.pop("user_id", None)
    data.pop("username", None)
    data["argv"] = [proc.redact(a) for a in sys.argv[1:]][:30] if options.trigger == "cli" else []
    data["lock"] = str(app_settings.runtime_dir / "deploy.lock")  # which checkout ran it
    return data
