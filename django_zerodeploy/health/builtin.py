"""The checks shipped with django-zerodeploy. Each does one real round trip and nothing else;
timing, timeouts and caching belong to the runner."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import psutil
from django.apps import apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils import timezone

from ..conf import app_settings
from .api import Check, Observation
from .drain import drain_state

logger = logging.getLogger("django_zerodeploy.health")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class _PerAliasCheck(Check):
    """A check of one alias (database or cache); a bare path expands to every alias."""

    def __init__(self, alias: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
        self.alias = alias
        kwargs.setdefault("component_id", alias)
        super().__init__(**kwargs)

    @classmethod
    def aliases(cls) -> list[str]:
        raise NotImplementedError

    @classmethod
    def expand(cls, **options: Any) -> list[Check]:
        if "alias" in options:
            return [cls(**options)]
        return [cls(alias=alias, **options) for alias in cls.aliases()]


class DatabaseCheck(_PerAliasCheck):
    """``SELECT 1`` on one database alias; a bare path means one check per alias.

    Runs on the runner's own thread, so it opens and closes connections like a request would
    (``CONN_MAX_AGE`` is respected): the response time includes connecting when a request's
    would.
    """

    name = "database:responseTime"
    component_type = "datastore"

    @classmethod
    def aliases(cls) -> list[str]:
        return list(settings.DATABASES)

    def check(self) -> Observation:
        connection = connections[self.alias]
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1" + connection.features.bare_select_suffix)
            cursor.fetchone()
        return Observation(_ms(started), "ms")


class CacheCheck(_PerAliasCheck):
    """Set and get a key unique to this process (fresh value each round) on one cache alias.

    A bare path means one check per alias in ``CACHES``, leaving out ``DummyCache`` aliases,
    which store nothing by design.
    """

    name = "cache:responseTime"
    component_type = "datastore"

    @classmethod
    def aliases(cls) -> list[str]:
        return [
            alias
            for alias, conf in settings.CACHES.items()
            if not str(conf.get("BACKEND", "")).endswith(".DummyCache")
        ]

    def check(self) -> Observation:
        from django.core.cache import caches

        cache = caches[self.alias]
        key = f"django-zerodeploy:healthz:{socket.gethostname()}:{os.getpid()}"
        value = uuid.uuid4().hex
        started = time.perf_counter()
        cache.set(key, value, timeout=60)
        seen = cache.get(key)
        elapsed = _ms(started)
        if seen != value:
            return Observation(
                elapsed, "ms", "fail", "the value read back differs from the value set"
            )
        return Observation(elapsed, "ms")


class _PinnedMigrations:
    """This process's migration files, read from disk once and reused, so a checkout that
    moves under a running worker does not change what the worker reports. Inherited by
    workers forked from a ``--preload`` master, which loaded the same code."""

    _lock = threading.Lock()
    _loader: Any = None

    @classmethod
    def disk(cls) -> Any:
        with cls._lock:
            if cls._loader is None:
                from django.db.migrations.loader import MigrationLoader

                cls._loader = MigrationLoader(None, ignore_no_migrations=True)
            return cls._loader


def _pinned_loader(connection: Any) -> Any:
    """A MigrationLoader whose disk half is the pinned one and whose applied half is read now."""
    from django.db.migrations.loader import MigrationLoader

    pinned = _PinnedMigrations.disk()

    class PinnedLoader(MigrationLoader):
        def load_disk(self) -> None:
            self.disk_migrations = dict(pinned.disk_migrations)
            self.unmigrated_apps = set(pinned.unmigrated_apps)
            self.migrated_apps = set(pinned.migrated_apps)

    return PinnedLoader(connection, ignore_no_migrations=True)


class MigrationsCheck(Check):
    """Migrations of the code this worker runs that the database has not applied.

    The migration files are pinned at worker boot (``prepare``); each round only reads the
    applied set. A passing result is reused for 30 s: migrations are applied before a release
    takes traffic and rarely reverted, while an unapplied one is re-checked every round.
    """

    name = "migrations:unapplied"
    component_type = "datastore"
    cache_seconds = 30.0

    def __init__(self, alias: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
        self.alias = alias
        kwargs.setdefault("component_id", alias)
        super().__init__(**kwargs)

    def prepare(self) -> None:
        _PinnedMigrations.disk()

    def check(self) -> Observation:
        loader = _pinned_loader(connections[self.alias])
        unapplied: list[str] = []
        for leaf in loader.graph.leaf_nodes():
            for key in loader.graph.forwards_plan(leaf):
                name = f"{key[0]}.{key[1]}"
                if key not in loader.applied_migrations and name not in unapplied:
                    unapplied.append(name)
        # Post-deploy (contract) migrations run after the reload: until then this release is
        # meant to serve without them, so they warn instead of failing readiness.
        post = [n for n in unapplied if _post_deploy(loader, n)]
        unapplied = [n for n in unapplied if n not in post]
        if unapplied:
            shown = ", ".join(unapplied[:10]) + (" ..." if len(unapplied) > 10 else "")
            return Observation(len(unapplied), "migrations", "fail", f"unapplied: {shown}")
        if post:
            shown = ", ".join(post[:10]) + (" ..." if len(post) > 10 else "")
            return Observation(
                len(post), "migrations", "warn", f"post-deploy migrations pending: {shown}"
            )
        return Observation(0, "migrations")


def _post_deploy(loader: Any, label: str) -> bool:
    """Marked post-deploy (``zerodeploy = {"stage": "post"}``; see docs/migrations.md)."""
    from ..migration_safety import PlanError, read_marker

    migration = loader.graph.nodes.get(tuple(label.split(".", 1)))
    try:
        return migration is not None and read_marker(migration).stage == "post"
    except PlanError:
        return False


class DiskCheck(Check):
    """Disk usage where the code lives; warns above ``HEALTHZ_DISK_WARN_PERCENT``."""

    name = "disk:utilization"
    component_type = "system"
    critical = False

    def __init__(self, path: str | None = None, **kwargs: Any) -> None:
        self.path = path
        super().__init__(**kwargs)

    def check(self) -> Observation:
        usage = psutil.disk_usage(str(self.path or app_settings.repo_dir))
        limit = app_settings.HEALTHZ_DISK_WARN_PERCENT
        if usage.percent >= limit:
            return Observation(
                usage.percent, "percent", "warn", f"disk {usage.percent}% used (warn at {limit}%)"
            )
        return Observation(usage.percent, "percent")


class MemoryCheck(Check):
    """Memory in use on this host; warns above ``HEALTHZ_MEMORY_WARN_PERCENT``."""

    name = "memory:utilization"
    component_type = "system"
    critical = False

    def check(self) -> Observation:
        percent = psutil.virtual_memory().percent
        limit = app_settings.HEALTHZ_MEMORY_WARN_PERCENT
        if percent >= limit:
            return Observation(
                percent, "percent", "warn", f"memory {percent}% used (warn at {limit}%)"
            )
        return Observation(percent, "percent")


class DjangoQClusterCheck(Check):
    """Running django-q2 clusters, from the heartbeats they write to the cache every few
    seconds. Non-critical: web traffic does not need the cluster, deploys from the admin do.

    With routing (``ZERODEPLOY["Q_CLUSTER_NAME"]`` or ``HOST``) it warns unless this host's
    deploy cluster beats: the one the host registry names for this host and that queue.
    Left out when django-q2 is not installed or its cache is local to one process (a
    heartbeat written there can never be seen by a web worker).
    """

    name = "django-q:clusters"
    component_type = "component"
    critical = False

    @classmethod
    def expand(cls, **options: Any) -> list[Check]:
        if options or not apps.is_installed("django_q"):
            return [cls(**options)] if options else []
        from django_q.conf import Conf

        from ..tasks.cluster_checks import stats_in_broker

        backend = str(settings.CACHES.get(Conf.CACHE, {}).get("BACKEND", ""))
        if stats_in_broker():
            return [cls()]  # the Redis broker keeps the heartbeats in Redis, not the cache
        if backend.endswith((".LocMemCache", ".DummyCache")) or not backend:
            logger.info(
                "django-q2 heartbeat check left out: cache %r is local to each process", Conf.CACHE
            )
            return []
        return [cls()]

    def check(self) -> Observation:
        from django_q.brokers import get_broker
        from django_q.conf import Conf

        from ..tasks.cluster_checks import stats_in_broker

        broker = get_broker()
        in_broker = stats_in_broker()
        if broker.cache is None and not in_broker:
            return Observation(
                None, "clusters", "warn", f"django-q2 cache {Conf.CACHE!r} is not configured"
            )
        stats = _running_stats(broker, in_broker)
        name = app_settings.cluster_name
        if not name:
            if not stats:
                return Observation(
                    0, "clusters", "warn", f"no heartbeat from cluster {Conf.PREFIX}"
                )
            return Observation(len(stats), "clusters")
        try:
            sentinel, why = _registered_sentinel(name)
        except DatabaseError as exc:
            return Observation(
                len(stats), "clusters", "warn", f"cannot read the host registry: {exc}"[:300]
            )
        if sentinel is None or not any(getattr(s, "sentinel", None) == sentinel for s in stats):
            return Observation(
                len(stats),
                "clusters",
                "warn",
                f"no heartbeat from cluster {name} on host {app_settings.host}"
                + (f" ({why})" if why else ""),
            )
        return Observation(len(stats), "clusters")


def _running_stats(broker: Any, in_broker: bool) -> list[Any]:
    """The heartbeat (``Stat``) of every running cluster of this site. django-q2 keeps them all
    under ``Q_CLUSTER["name"]`` (``Conf.Q_STAT``), whichever queue each cluster reads."""
    from django_q.conf import Conf
    from django_q.signing import BadSignature, SignedPackage

    if in_broker:  # Redis: KEYS and MGET, read-only
        packs = broker.get_stats(f"{Conf.Q_STAT}:*") or []
    else:  # read-only on purpose: Stat.get_all() writes the key list back every call
        packs = list(broker.cache.get_many(broker.cache.get(Conf.Q_STAT) or []).values())
    alive = {str(Conf.IDLE), str(Conf.WORKING), str(Conf.STARTING)}
    stats = []
    for pack in packs:
        try:
            stat = SignedPackage.loads(pack)
        except BadSignature:
            continue
        if str(getattr(stat, "status", "")) in alive:
            stats.append(stat)
    return stats


def _registered_sentinel(cluster: str) -> tuple[int | None, str]:
    """The sentinel pid of this host's cluster reading ``cluster``, from the host registry
    (a heartbeat does not say which queue its cluster reads; the row its workers write does),
    else None and why."""
    from ..models import HOST_STALE_AFTER, Host

    row = Host.objects.filter(name=app_settings.host).values("cluster", "pid", "heartbeat_at")
    found = row.first()
    if found is None or not found["heartbeat_at"]:
        return None, ""
    if timezone.now() - found["heartbeat_at"] >= HOST_STALE_AFTER:
        return None, ""
    if found["cluster"] != cluster[:100]:
        return None, f"the host registry has cluster {found['cluster']!r} running there"
    return found["pid"], ""


class DrainingCheck(Check):
    """Fails while this host's drain flag exists (``manage.py healthz --drain``).

    Always present, even when ``HEALTH_CHECKS`` leaves it out: a drain must always work.
    """

    name = "drain:draining"
    component_type = "system"

    def check(self) -> Observation:
        state = drain_state()
        if state is not None:
            return Observation(True, None, "fail", state.describe())
        return Observation(False)


DEFAULT_CHECKS: tuple[str, ...] = (
    "django_zerodeploy.health.builtin.DatabaseCheck",
    "django_zerodeploy.health.builtin.CacheCheck",
    "django_zerodeploy.health.builtin.MigrationsCheck",
    "django_zerodeploy.health.builtin.DiskCheck",
    "django_zerodeploy.health.builtin.MemoryCheck",
    "django_zerodeploy.health.builtin.DjangoQClusterCheck",
    "django_zerodeploy.health.builtin.DrainingCheck",
)
