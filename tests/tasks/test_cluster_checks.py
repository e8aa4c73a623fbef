"""The Q_CLUSTER system checks warn about every value that would run a deploy twice."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_zerodeploy.tasks.cluster_checks import CHECK_IDS, check_q_cluster, effective_q_cluster

SAFE = {
    "name": "site",
    "orm": "default",
    "timeout": 1800,
    "retry": 1900,
    "max_attempts": 1,
    "ack_failures": True,
    "cache": "shared",
    "ALT_CLUSTERS": {},
}
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "shared": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": "/tmp/unused-zd",
    },
}


def ids(q_cluster, zerodeploy=None, caches=CACHES):
    with override_settings(Q_CLUSTER=q_cluster, ZERODEPLOY=zerodeploy or {}, CACHES=caches):
        return sorted(m.id for m in check_q_cluster())


def test_the_documented_settings_pass():
    assert ids(SAFE) == []


def test_the_example_project_settings_pass():
    from exampleproject import settings as example

    assert ids(example.Q_CLUSTER, caches=example.CACHES) == []


def test_django_q2_defaults_warn_about_everything_that_reruns_a_deploy():
    found = ids({"orm": "default"})
    assert found == [
        "zerodeploy.W060",
        "zerodeploy.W061",
        "zerodeploy.W062",
        "zerodeploy.W063",
        "zerodeploy.W065",
    ]
    assert set(found) <= set(CHECK_IDS)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"max_attempts": 0}, "zerodeploy.W060", id="max-attempts-forever"),
        pytest.param({"max_attempts": 3}, "zerodeploy.W060", id="max-attempts-3"),
        pytest.param({"ack_failures": False}, "zerodeploy.W061", id="no-ack-failures"),
        pytest.param({"timeout": 60, "retry": 120}, "zerodeploy.W062", id="timeout-short"),
        pytest.param({"retry": 1800}, "zerodeploy.W063", id="retry-equals-timeout"),
        pytest.param({"retry": 60}, "zerodeploy.W063", id="retry-default"),
        pytest.param({"sync": True}, "zerodeploy.W066", id="sync"),
        pytest.param({"cache": "default"}, "zerodeploy.W065", id="locmem-cache"),
        pytest.param({"cache": "missing"}, "zerodeploy.W065", id="unknown-cache"),
    ],
)
def test_each_rerun_risk_has_its_warning(change, expected):
    assert ids({**SAFE, **change}) == [expected]


def test_timeout_missing_warns_twice():
    conf = dict(SAFE)
    del conf["timeout"]
    assert ids(conf) == ["zerodeploy.W062", "zerodeploy.W063"]


def test_step_timeout_sets_the_minimum():
    assert ids({**SAFE, "timeout": 600, "retry": 700}) == ["zerodeploy.W062"]
    assert ids({**SAFE, "timeout": 600, "retry": 700}, {"STEP_TIMEOUT": 300}) == []


def test_routing_needs_alt_clusters():
    conf = dict(SAFE)
    del conf["ALT_CLUSTERS"]
    assert ids(conf, {"Q_CLUSTER_NAME": "deploy-web1"}) == ["zerodeploy.W064"]
    assert ids(SAFE, {"Q_CLUSTER_NAME": "deploy-web1"}) == []


def test_alt_cluster_overrides_are_what_the_routed_cluster_uses():
    conf = {**SAFE, "ALT_CLUSTERS": {"deploy-web1": {"retry": 30, "name": "ignored"}}}
    with override_settings(Q_CLUSTER=conf, ZERODEPLOY={"Q_CLUSTER_NAME": "deploy-web1"}):
        assert effective_q_cluster()["retry"] == 30
        assert effective_q_cluster()["name"] == "site"
    assert ids(conf, {"Q_CLUSTER_NAME": "deploy-web1"}) == ["zerodeploy.W063"]
    assert ids(conf) == []  # not routed: the override does not apply


def test_messages_say_what_to_set():
    with override_settings(Q_CLUSTER={**SAFE, "max_attempts": 0}, CACHES=CACHES):
        (message,) = check_q_cluster()
    assert "max_attempts" in message.msg and "forever" in message.msg
    assert "max_attempts'] = 1" in message.hint


def test_checks_are_registered_with_django():
    with override_settings(Q_CLUSTER={**SAFE, "ack_failures": False}, CACHES=CACHES):
        found = [
            m.id for m in run_checks(tags=["compatibility"]) if m.id.startswith("zerodeploy.W06")
        ]
    assert found == ["zerodeploy.W061"]


def test_no_warnings_when_django_q_is_not_installed(settings):
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django_q"]
    assert ids({"orm": "default"}) == []


def test_a_redis_broker_keeps_heartbeats_itself_so_a_local_cache_is_no_warning():
    """django-q2's Redis broker writes the clusters' stats to Redis, not Q_CLUSTER['cache']."""
    from django_zerodeploy.tasks.cluster_checks import stats_in_broker

    redis = {k: v for k, v in SAFE.items() if k != "orm"} | {"redis": "redis://127.0.0.1:6379/0"}
    assert ids({**redis, "cache": "default"}) == []
    assert stats_in_broker(redis) and not stats_in_broker(SAFE)
    assert not stats_in_broker({**redis, "sqs": {"aws_region": "x"}})
    assert stats_in_broker({"broker_class": "django_q.brokers.redis_broker.Redis"})
    assert not stats_in_broker({"broker_class": "django_q.brokers.orm.ORM"})
