"""Creating a queued deploy record and handing it to django-q2, so that no worker ever sees the
task without its record (one commit with the ORM broker on the same database, else after it).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.apps import apps
from django.db import router, transaction
from django.utils import timezone

from ..conf import app_settings
from ..models import Deployment
from ..proc import redact

logger = logging.getLogger("django_zerodeploy.tasks")

# The dotted path django-q2 stores with every queued task: it must keep resolving across
# upgrades, so the task stays at the top of the package (tasks/__init__.py).
TASK_PATH = "django_zerodeploy.tasks.run_queued_deployment"
# Options an admin or webhook deploy may carry into DeployOptions (stored in Deployment.options).
QUEUED_OPTION_KEYS = (
    "ref",
    "force",
    "install",
    "collectstatic",
    "rollback",
    "wait_lock",
    "skip_post_migrate",
)
# A queued deploy that finds the lock held (e.g. a deploy from the command line) waits this long
# for its turn instead of failing at once.
QUEUED_WAIT_LOCK = 300


def queue_deployment(
    *,
    trigger: str,
    user: Any = None,
    username: str = "",
    ref: str = "",
    options: dict[str, Any] | None = None,
    target_sha: str = "",
    subject: str = "",
    host: str = "",
    cluster: str | None = None,
    rollout: Any = None,
) -> Deployment:
    """Create a ``queued`` record and hand it to django-q2 so that a worker can never pick up a
    task whose record it cannot see yet: with the ORM broker on the same database, record and
    task are written in one transaction (one commit, nothing half-done); with another broker
    the task is enqueued once the surrounding transaction commits. ``host``/``cluster``: a
    rollout's deploy of another host (default: this host and its cluster)."""
    opts = {k: v for k, v in (options or {}).items() if k in QUEUED_OPTION_KEYS}
    opts.setdefault("wait_lock", QUEUED_WAIT_LOCK)
    with transaction.atomic(using=router.db_for_write(Deployment)):
        record = Deployment.objects.create(
            status=Deployment.Status.QUEUED,
            trigger=trigger,
            user=user if getattr(user, "pk", None) else None,
            username=(username or (user.get_username() if getattr(user, "pk", None) else ""))[
                : Deployment._meta.get_field("username").max_length
            ],
            host=host or app_settings.host,
            rollout=rollout,
            ref=ref[: Deployment._meta.get_field("ref").max_length],
            target_sha=target_sha,
            subject=subject[:500],
            options=opts,
        )
        if broker_shares_the_database():
            enqueue_deployment(record, cluster)
        else:
            transaction.on_commit(partial(enqueue_deployment, record, cluster))
    return record


def broker_shares_the_database() -> bool:
    """True when django-q2 uses its ORM broker on the database that holds the records (the
    broker choice follows django_q.brokers.get_broker)."""
    if not apps.is_installed("django_q"):
        return False
    from django_q.conf import Conf

    if Conf.BROKER_CLASS or Conf.IRON_MQ or isinstance(Conf.SQS, dict):
        return False
    return bool(Conf.ORM) and Conf.ORM == router.db_for_write(Deployment)


def enqueue_deployment(deployment: Deployment, cluster: str | None = None) -> str | None:
    """Hand a queued record to django-q2 (routed to ``cluster``, else this host's cluster when
    routing is on) and store the task id. If django-q2 refuses, the record says so instead of
    staying queued forever."""
    from django_q.tasks import async_task

    kwargs: dict[str, Any] = {"task_name": f"deploy-{deployment.pk}"}
    if cluster or app_settings.cluster_name:
        kwargs["cluster"] = cluster or app_settings.cluster_name
    try:
        with transaction.atomic(using=router.db_for_write(Deployment)):  # a failure stays contained
            task_id = async_task(TASK_PATH, deployment.pk, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any broker error must reach the record
        # redacted: a broker error may quote the broker URL with its password
        message = redact(f"Could not hand the deploy to django-q2: {type(exc).__name__}: {exc}")
        logger.error("Deployment %s: %s", deployment.pk, message)
        Deployment.objects.filter(pk=deployment.pk, status=Deployment.Status.QUEUED).update(
            status=Deployment.Status.FAILED,
            finished_at=timezone.now(),
            message=message[:2000],
        )
        return None
    Deployment.objects.filter(pk=deployment.pk).update(task_id=str(task_id)[:64])
    deployment.task_id = str(task_id)[:64]
    return str(task_id)
