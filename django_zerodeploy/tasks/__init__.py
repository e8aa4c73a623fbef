"""Admin and webhook deploys in the background, through django-q2, exactly once.

The web request only creates a ``queued`` record and hands its id to django-q2 (``queue``); a
cluster worker on the host that owns the checkout runs the very same pipeline as ``manage.py
deploy`` into that record (``run_queued_deployment``, here). django-q2 may deliver a task twice
(retries, ``retry`` shorter than the deploy), so the task first flips the record from ``queued``
to ``running`` with one conditional UPDATE: whoever loses that race, or finds the record already
taken, does nothing.

The task lives at the top of the package because django-q2 stores its dotted path
(``queue.TASK_PATH``) with every queued task: a task queued before an upgrade still runs after it.

queue.py           create the queued record and enqueue its task (one commit)
cluster_status.py  is a cluster running that will run this host's deploys? (for the admin)
cluster_checks.py  system checks that warn when ``Q_CLUSTER`` would run a deploy twice
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import asdict, is_dataclass
from typing import Any

from django.utils import timezone

from ..conf import app_settings
from ..exit_codes import CommandFailure
from ..models import Deployment
from ..notify import notify_admins
from ..proc import redact
from .queue import QUEUED_OPTION_KEYS

logger = logging.getLogger("django_zerodeploy.tasks")


def claim_deployment(deployment_id: int) -> Deployment | None:
    """Flip ``queued`` -> ``running`` atomically; the record if this caller won, else None."""
    claimed = Deployment.objects.filter(pk=deployment_id, status=Deployment.Status.QUEUED).update(
        status=Deployment.Status.RUNNING,
        started_at=timezone.now(),
        host=app_settings.host,
        pid=os.getpid(),
    )
    if not claimed:
        return None
    return Deployment.objects.get(pk=deployment_id)


def options_for(record: Deployment) -> Any:
    """The pipeline's ``DeployOptions`` for a queued record (what the admin or webhook asked);
    raises ``CommandFailure`` (exit 2) for options it refuses."""
    from ..pipeline import DeployOptions

    stored = {k: v for k, v in (record.options or {}).items() if k in QUEUED_OPTION_KEYS}
    return DeployOptions(
        **stored,
        trigger=record.trigger,
        user_id=record.user_id,
        username=record.username,
    )


def run_queued_deployment(deployment_id: int) -> dict[str, Any]:
    """The django-q2 task. Runs the deploy of one queued record, at most once."""
    record = claim_deployment(deployment_id)
    if record is None:
        current = (
            Deployment.objects.filter(pk=deployment_id).values_list("status", flat=True).first()
        )
        logger.warning(
            "Deployment %s is %s, not queued: this delivery of its task does nothing.",
            deployment_id,
            current or "missing",
        )
        return {"deployment_id": deployment_id, "skipped": True, "status": current}
    from ..pipeline import not_started, run_deploy

    try:
        options = options_for(record)
    except CommandFailure as exc:  # stored options the deploy refuses: a usage error, exit 2
        return _as_dict(not_started(record, exc))
    try:
        result = run_deploy(options, deployment=record)
    except BaseException as exc:
        _record_crash(record, exc)
        raise
    return _as_dict(result)


def _record_crash(record: Deployment, exc: BaseException) -> None:
    """The pipeline raised instead of returning a result: never leave the record ``running``
    for a deploy that is no longer running."""
    message = redact(f"The deploy task stopped with {type(exc).__name__}: {exc}")
    updated = Deployment.objects.filter(pk=record.pk, status=Deployment.Status.RUNNING).update(
        status=Deployment.Status.FAILED, finished_at=timezone.now(), message=message[:2000]
    )
    if updated:
        notify_admins(
            f"Deploy #{record.pk} failed on {socket.gethostname()}",
            f"{message}\n\nTrigger: {record.trigger}; started by {record.username or 'unknown'}.",
        )


def _as_dict(result: Any) -> dict[str, Any]:
    """The task's return value, which django-q2 stores: its message and steps come redacted
    from the pipeline; anything else is redacted here."""
    if is_dataclass(result) and not isinstance(result, type):
        return asdict(result)
    return {"result": redact(repr(result))}
