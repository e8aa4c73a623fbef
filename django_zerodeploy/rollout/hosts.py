"""The host registry: every running django-q2 cluster writes its host's row in the shared
database (name, the queue it reads, the release its Gunicorn serves, HEALTHZ_URL, drained or
not) every few seconds, from a thread in each of its workers.

The release is the ``releaseId`` the host's own ``HEALTHZ_URL`` reports: what its Gunicorn
serves, which is not the checkout's commit while a deploy runs or after a reload that failed.
When that URL is unset or does not answer in ``HEALTHZ_TIMEOUT`` seconds, the row keeps the
checkout's commit and says so (``release_from_checkout``, ``release_problem``).

A worker, not the sentinel: django-q2's ``post_spawn`` signal is the one hook that runs in the
cluster's own processes, and it runs again when a worker is recycled or reincarnated.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone

from ..conf import app_settings
from ..git import read_head_without_git
from ..health.drain import is_draining
from ..healthz_url import read_release
from ..models import HOST_STALE_AFTER, Host

logger = logging.getLogger("django_zerodeploy.rollout")

HEARTBEAT_SECONDS = 5.0
HEALTHZ_TIMEOUT = 2.0  # per heartbeat: a hung Gunicorn must not stall the registry
STALE_AFTER = HOST_STALE_AFTER  # a row older than this: no cluster runs there

_started: set[int] = set()  # pids of the processes that already beat
_lock = threading.Lock()


def cluster_queue() -> str:
    """The queue this process's django-q2 cluster reads (Q_CLUSTER_NAME from its environment,
    else Q_CLUSTER['name'])."""
    from django_q.conf import Conf

    return str(Conf.CLUSTER_NAME)


def local_release() -> str:
    """The commit of this host's checkout (no subprocess: it runs every few seconds)."""
    return read_head_without_git(app_settings.repo_dir) or ""


@dataclass(frozen=True)
class Served:
    """The release a host serves, and where that value came from."""

    release: str
    from_checkout: bool = False
    problem: str = ""  # why HEALTHZ_URL gave no releaseId (from_checkout)


def served_release(url: str | None = None, timeout: float = HEALTHZ_TIMEOUT) -> Served:
    """The ``releaseId`` of ``url`` (default HEALTHZ_URL; a drained host's 503 carries it
    too), else the checkout's commit marked as such, with the reason."""
    url = app_settings.HEALTHZ_URL if url is None else url
    if not url:
        return Served(local_release(), True, "no HEALTHZ_URL")
    release, problem = read_release(url, timeout)
    return Served(release) if release else Served(local_release(), True, problem[:300])


def register(started_at: Any = None) -> Host:
    """Write this host's row now."""
    served = served_release()
    values: dict[str, Any] = {
        "cluster": cluster_queue()[:100],
        "release": served.release[:40],
        "release_from_checkout": served.from_checkout,
        "release_problem": served.problem[:300],
        "healthz_url": (app_settings.HEALTHZ_URL or "")[:500],
        "drained": _drained(),
        "heartbeat_at": timezone.now(),
        "pid": os.getppid(),  # the sentinel: the worker's parent
    }
    if started_at is not None:
        values["started_at"] = started_at
    host, _ = Host.objects.update_or_create(name=app_settings.host, defaults=values)
    return host


def _drained() -> bool:
    try:
        return is_draining()
    except Exception:  # noqa: BLE001 - an unusable runtime dir: the ping task reports it
        return False


def _beat(started_at: Any) -> None:
    """The heartbeat loop of one worker; a database outage is logged and retried."""
    while True:
        close_old_connections()
        try:
            register(started_at)
        except DatabaseError as exc:
            logger.warning("Host heartbeat of %s failed: %s", app_settings.host, exc)
        finally:
            connections.close_all()
        threading.Event().wait(HEARTBEAT_SECONDS)


def start_heartbeat(sender: Any = None, proc_name: str = "", **kwargs: Any) -> None:
    """django-q2 ``post_spawn`` receiver: start this worker's heartbeat thread (once)."""
    with _lock:
        if os.getpid() in _started:
            return
        _started.add(os.getpid())
    thread = threading.Thread(
        target=_beat, args=(timezone.now(),), name="zerodeploy-host-heartbeat", daemon=True
    )
    thread.start()


def connect() -> None:
    """Hook the heartbeat into django-q2's clusters (called from AppConfig.ready)."""
    from django_q.signals import post_spawn

    post_spawn.connect(start_heartbeat, dispatch_uid="django_zerodeploy.host_heartbeat")


@dataclass(frozen=True)
class HostInfo:
    """A registered host as ``deploy --hosts --list`` and the admin show it."""

    name: str
    cluster: str
    release: str
    healthz_url: str
    drained: bool
    heartbeat_age: float | None
    release_from_checkout: bool = False
    release_problem: str = ""

    @property
    def alive(self) -> bool:
        age = self.heartbeat_age
        return age is not None and age < STALE_AFTER.total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cluster": self.cluster,
            "release": self.release,
            "release_from_checkout": self.release_from_checkout,
            "release_problem": self.release_problem,
            "healthz_url": self.healthz_url,
            "drained": self.drained,
            "heartbeat_age": None if self.heartbeat_age is None else round(self.heartbeat_age, 1),
            "alive": self.alive,
        }


def registered_hosts() -> list[HostInfo]:
    now = timezone.now()
    return [
        HostInfo(
            h.name,
            h.cluster,
            h.release,
            h.healthz_url,
            h.drained,
            (now - h.heartbeat_at).total_seconds() if h.heartbeat_at else None,
            bool(h.release_from_checkout),
            h.release_problem or "",
        )
        for h in Host.objects.order_by("name")
    ]


def hosts_table(hosts: list[HostInfo]) -> str:
    """The text of ``deploy --hosts --list``."""
    if not hosts:
        return (
            "No host is registered: each host's django-q2 cluster registers it when it runs "
            "(python manage.py qcluster)."
        )
    lines = [f"{'HOST':<20} {'RELEASE':<11} {'HEARTBEAT':<14} {'STATE':<9} CLUSTER"]
    notes = []
    for h in hosts:
        age = "never" if h.heartbeat_age is None else f"{h.heartbeat_age:.0f} s ago"
        state = "drained" if h.drained else ("up" if h.alive else "no cluster")
        release = (h.release[:10] or "?") + ("*" if h.release_from_checkout else "")
        lines.append(f"{h.name:<20} {release:<11} {age:<14} {state:<9} {h.cluster}")
        if h.release_from_checkout:
            notes.append(
                f"* {h.name}: its checkout's commit, not read from what it serves "
                f"({h.release_problem or 'HEALTHZ_URL gave no releaseId'})"
            )
    return "\n".join(lines + notes)
