"""System checks for ``Q_CLUSTER``: warn when django-q2 would run a deploy twice.

django-q2's defaults suit idempotent jobs, not deploys: a failing task is re-run forever
(``max_attempts`` 0), an unacknowledged failure is handed out again, and on the ORM and Redis
brokers a task running longer than ``retry`` seconds is given to another worker while the first
still runs. The task guards against a second run in code (``tasks.claim_deployment``); these
checks make the misconfiguration visible at start-up. ``Q_CLUSTER`` is read from settings on
every call (django-q2 itself reads it once, at import).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks

from ..conf import app_settings

# id -> what it means (documented in docs/admin.md).
CHECK_IDS: dict[str, str] = {
    "zerodeploy.W060": "Q_CLUSTER['max_attempts'] is not 1: a failed deploy would be run again.",
    "zerodeploy.W061": "Q_CLUSTER['ack_failures'] is not True: a failed deploy stays on the queue.",
    "zerodeploy.W062": "Q_CLUSTER['timeout'] is missing or shorter than one deploy step may take.",
    "zerodeploy.W063": "Q_CLUSTER['retry'] is not greater than 'timeout': a slow deploy is handed "
    "to a second worker while it still runs.",
    "zerodeploy.W064": "ZERODEPLOY['Q_CLUSTER_NAME'] routes deploys to a named cluster but "
    "Q_CLUSTER has no 'ALT_CLUSTERS' (qcluster fails to start with KeyError).",
    "zerodeploy.W065": "Q_CLUSTER's cache is private to each process: the admin cannot see "
    "whether a cluster runs.",
    "zerodeploy.W066": "Q_CLUSTER['sync'] is True: deploys would run inside the web request.",
}

_PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


def effective_q_cluster() -> dict[str, Any]:
    """``Q_CLUSTER`` as the deploying cluster sees it: with ``ALT_CLUSTERS[name]`` applied when
    deploys are routed to a named cluster (the way django_q.conf merges them)."""
    conf = dict(getattr(settings, "Q_CLUSTER", None) or {})
    name = app_settings.cluster_name
    alt = conf.pop("ALT_CLUSTERS", None)
    if name and name not in (conf.get("name"), conf.get("cluster_name")) and isinstance(alt, dict):
        override = alt.get(name)
        if isinstance(override, dict):
            conf.update({k: v for k, v in override.items() if k not in ("name", "cluster_name")})
    return conf


def stats_in_broker(conf: dict[str, Any] | None = None) -> bool:
    """True when django-q2's broker keeps the clusters' heartbeats itself (the Redis broker
    does, in Redis) instead of in ``Q_CLUSTER['cache']``. Follows the order in which
    ``django_q.brokers.get_broker`` picks a broker: custom class, IronMQ, SQS, ORM, MongoDB,
    else Redis."""
    conf = effective_q_cluster() if conf is None else conf
    custom = conf.get("broker_class")
    if custom:
        return _overrides_stats(str(custom))
    if conf.get("iron_mq") or isinstance(conf.get("sqs"), dict):
        return False
    return not (conf.get("orm") or conf.get("mongo"))


def _overrides_stats(path: str) -> bool:
    import importlib

    from django_q.brokers import Broker

    module, _, name = path.rpartition(".")
    try:
        broker = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return False  # django-q2 will fail louder than this check could
    return getattr(broker, "get_stats", None) is not Broker.get_stats


def _warning(check_id: str, message: str, hint: str) -> checks.Warning:
    return checks.Warning(message, hint=hint, id=check_id)


@dataclass(frozen=True)
class _Cluster:
    """What each rule reads: the effective configuration, the raw setting, and its name."""

    conf: dict[str, Any]
    raw: dict[str, Any]
    where: str


@dataclass(frozen=True)
class _MustBe:
    """A rule that one key must hold one value (W060, W061); the warning says what it holds."""

    check_id: str
    key: str
    default: Any
    holds: Callable[[Any], bool]
    consequence: str
    hint: str

    def __call__(self, c: _Cluster) -> checks.Warning | None:
        value = c.conf.get(self.key, self.default)
        if self.holds(value):
            return None
        return _warning(
            self.check_id, f"{c.where}['{self.key}'] is {value!r}: {self.consequence}", self.hint
        )


@dataclass(frozen=True)
class _Holds:
    """A rule that a condition on the cluster must hold (W062, W064, W066)."""

    check_id: str
    holds: Callable[[_Cluster], bool]
    message: Callable[[_Cluster], str]
    hint: str

    def __call__(self, c: _Cluster) -> checks.Warning | None:
        return None if self.holds(c) else _warning(self.check_id, self.message(c), self.hint)


_max_attempts = _MustBe(
    "zerodeploy.W060",
    "max_attempts",
    0,
    lambda value: value == 1,
    "django-q2 would run a failed deploy again (0 means forever).",
    "Set Q_CLUSTER['max_attempts'] = 1 (see docs/admin.md).",
)
_ack_failures = _MustBe(
    "zerodeploy.W061",
    "ack_failures",
    False,
    lambda value: value is True,
    "a failed deploy is not acknowledged and stays on the queue to be handed out again.",
    "Set Q_CLUSTER['ack_failures'] = True.",
)


_timeout = _Holds(
    "zerodeploy.W062",
    lambda c: (
        isinstance(c.conf.get("timeout"), (int, float))
        and c.conf["timeout"] >= app_settings.STEP_TIMEOUT
    ),
    lambda c: (
        f"{c.where}['timeout'] is {c.conf.get('timeout')!r}: a deploy runs several steps "
        f"of up to STEP_TIMEOUT ({app_settings.STEP_TIMEOUT:g} s) each and must not be killed halfway."
    ),
    "Set Q_CLUSTER['timeout'] longer than your longest deploy (e.g. 1800) and retry "
    "greater than it.",
)


def _retry(c: _Cluster) -> checks.Warning | None:
    timeout, retry = c.conf.get("timeout"), c.conf.get("retry", 60)
    if not isinstance(retry, (int, float)):
        return None
    if isinstance(timeout, (int, float)):
        if retry > timeout:
            return None
        return _warning(
            "zerodeploy.W063",
            f"{c.where}['retry'] ({retry!r}) is not greater than 'timeout' ({timeout!r}): the broker "
            "would hand a long deploy to a second worker while the first still runs it.",
            "Set Q_CLUSTER['retry'] greater than 'timeout' (e.g. timeout 1800, retry 1900).",
        )
    return _warning(
        "zerodeploy.W063",
        f"{c.where} has no 'timeout', so a deploy running longer than 'retry' ({retry!r} s) "
        "is handed to a second worker while the first still runs it.",
        "Set Q_CLUSTER['timeout'] and a greater 'retry'.",
    )


_alt_clusters = _Holds(
    "zerodeploy.W064",
    lambda c: not app_settings.cluster_name or "ALT_CLUSTERS" in c.raw,
    lambda c: (
        f"ZERODEPLOY['Q_CLUSTER_NAME'] is {app_settings.cluster_name!r} but Q_CLUSTER has "
        "no 'ALT_CLUSTERS': `Q_CLUSTER_NAME=... manage.py qcluster` fails with KeyError."
    ),
    "Add Q_CLUSTER['ALT_CLUSTERS'] = {} (or per-cluster overrides).",
)


def _shared_cache(c: _Cluster) -> checks.Warning | None:
    problem = None if stats_in_broker(c.conf) else cache_problem(c.conf.get("cache", "default"))
    if not problem:
        return None
    return _warning(
        "zerodeploy.W065",
        problem,
        "Point Q_CLUSTER['cache'] at a cache every process shares (Redis, database or "
        "file-based); see docs/admin.md.",
    )


_sync = _Holds(
    "zerodeploy.W066",
    lambda c: not c.conf.get("sync"),
    lambda c: (
        f"{c.where}['sync'] is True: admin and webhook deploys would run inside the web "
        "request, and a reload would kill the worker that runs them."
    ),
    "Remove 'sync' outside tests.",
)


_RULES = (_max_attempts, _ack_failures, _timeout, _retry, _alt_clusters, _shared_cache, _sync)


@checks.register(checks.Tags.compatibility)
def check_q_cluster(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn about every ``Q_CLUSTER`` value that could run a deploy more than once."""
    if not apps.is_installed("django_q"):
        return []
    where = "Q_CLUSTER"
    if app_settings.cluster_name:
        where = f"Q_CLUSTER (with ALT_CLUSTERS[{app_settings.cluster_name!r}])"
    cluster = _Cluster(effective_q_cluster(), getattr(settings, "Q_CLUSTER", None) or {}, where)
    return [found for rule in _RULES if (found := rule(cluster)) is not None]


def cache_problem(alias: str) -> str | None:
    caches = getattr(settings, "CACHES", None) or {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    if alias not in caches:
        return (
            f"Q_CLUSTER['cache'] is {alias!r}, which is not in CACHES: django-q2 cannot save "
            "cluster heartbeats and the admin cannot see whether a cluster runs."
        )
    backend = caches[alias].get("BACKEND", "")
    if backend in _PROCESS_LOCAL_CACHES:
        return (
            f"Q_CLUSTER's cache {alias!r} is {backend.rsplit('.', 1)[-1]}, private to each "
            "process: the admin cannot see the cluster's heartbeat and would always report "
            "that no cluster is running."
        )
    return None
