"""Admin and webhook deploys in the background, through django-q2, exactly once.

The web request only creates a ``queued`` record and hands its id to django-q2; a cluster worker
on the host that owns the checkout runs the very same pipeline as ``manage.py deploy`` into that
record. django-q2 may deliver a task twice (retries, ``retry`` shorter than the deploy), so the
task first flips the record from ``queued`` to ``running`` with one conditional UPDATE: whoever
loses that race, or finds the record already taken, does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django.apps import apps
from django.db import router, transaction
from django.utils import timezone

from .conf import app_settings
from .exit_codes import CommandFailure
from .models import Deployment
from .notify import notify_admins
from .proc import redact

logger = logging.getLogger("django_zerodeploy.tasks")

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
# django-q2 saves a cluster's stats every guard cycle (0.5 s) with a 3 s expiry; a heartbeat
# older than this means the cluster is gone even if a cache kept the entry.
HEARTBEAT_MAX_AGE = timedelta(seconds=15)
# A queued deploy that finds the lock held (e.g. a deploy from the command line) waits this long
# for its turn instead of failing at once.
QUEUED_WAIT_LOCK = 300


# -- creating and enqueueing ----------------------------------------------------------------
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


# -- running --------------------------------------------------------------------------------
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
    from .pipeline import DeployOptions

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
    from .pipeline import not_started, run_deploy

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


# -- is a cluster running? -------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterInfo:
    host: str
    pid: int
    status: str
    age_seconds: float


@dataclass(frozen=True)
class ClusterStatus:
    """What the admin tells people about django-q2. ``running`` is None when it cannot tell."""

    running: bool | None
    message: str
    clusters: list[ClusterInfo] = field(default_factory=list)


def cluster_status() -> ClusterStatus:
    """Whether a django-q2 cluster that will run this host's deploys is alive, from the
    clusters' own heartbeats (``django_q.status.Stat``, kept in the Django cache)."""
    if not apps.is_installed("django_q"):
        return ClusterStatus(
            False,
            "django-q2 is not installed (add 'django_q' to INSTALLED_APPS): deploys started "
            "here cannot run.",
        )
    from django_q.conf import Conf
    from django_q.status import Stat

    from .qcluster_checks import _cache_problem, stats_in_broker

    problem = None if stats_in_broker() else _cache_problem(Conf.CACHE)
    if problem:
        return ClusterStatus(None, "Cannot tell whether a django-q2 cluster runs. " + problem)
    try:
        stats = Stat.get_all()
    except Exception as exc:  # noqa: BLE001 - a cache outage must not break the admin
        return ClusterStatus(None, f"Cannot read django-q2 cluster stats: {exc}")
    now = timezone.now()
    alive = [
        ClusterInfo(s.host, s.pid, str(s.status), (now - s.timestamp).total_seconds())
        for s in stats
        if s.timestamp and now - s.timestamp < HEARTBEAT_MAX_AGE and s.status != Conf.STOPPED
    ]
    start_hint = "Start one with `python manage.py qcluster`"
    if app_settings.cluster_name:
        start_hint = (
            f"Start one on this host with `Q_CLUSTER_NAME={app_settings.cluster_name} "
            "python manage.py qcluster`"
        )
    if not alive:
        return ClusterStatus(
            False,
            f"No django-q2 cluster is running: deploys started here stay queued until one "
            f"runs. {start_hint}.",
        )
    if app_settings.cluster_name:
        here = socket.gethostname()
        local = [c for c in alive if c.host == here]
        if not local:
            hosts = ", ".join(sorted({c.host for c in alive}))
            return ClusterStatus(
                False,
                f"django-q2 clusters run on {hosts}, but none on this host ({here}), where "
                f"deploys are routed (cluster {app_settings.cluster_name!r}). {start_hint}.",
                alive,
            )
        alive = local
    hosts = ", ".join(sorted({c.host for c in alive}))
    return ClusterStatus(True, f"django-q2 cluster running on {hosts}.", alive)
