"""Whether a django-q2 cluster that will run this host's deploys is alive: what the admin
tells people before they queue a deploy that nothing would run."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import timedelta

from django.apps import apps
from django.utils import timezone

from ..conf import app_settings
from .cluster_checks import cache_problem, stats_in_broker

# django-q2 saves a cluster's stats every guard cycle (0.5 s) with a 3 s expiry; a heartbeat
# older than this means the cluster is gone even if a cache kept the entry.
HEARTBEAT_MAX_AGE = timedelta(seconds=15)


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

    problem = None if stats_in_broker() else cache_problem(Conf.CACHE)
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
