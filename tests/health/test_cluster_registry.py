"""Which heartbeat is this routed host's deploy cluster: the sentinel pid that the host's own,
fresh registry row names for that queue (tests/health/test_cluster_heartbeat.py runs the real
clusters)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from django_zerodeploy.health.builtin import _registered_sentinel
from django_zerodeploy.models import HOST_STALE_AFTER, Host

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def web1(settings):
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "HOST": "web1", "Q_CLUSTER_NAME": None}


def row(name: str, cluster: str, pid: int, age: timedelta = timedelta(0)) -> None:
    Host.objects.create(name=name, cluster=cluster, pid=pid, heartbeat_at=timezone.now() - age)


def test_this_hosts_fresh_row_for_its_queue_names_the_sentinel():
    row("web2", "deploy-web2", 222)
    assert _registered_sentinel("deploy-web1") == (None, "")  # another host's row is not ours
    row("web1", "deploy-web1", 111)
    assert _registered_sentinel("deploy-web1") == (111, "")


def test_a_stale_row_or_one_for_another_queue_names_none():
    row("web1", "deploy-web1", 111, age=HOST_STALE_AFTER + timedelta(seconds=1))
    assert _registered_sentinel("deploy-web1") == (None, "")
    Host.objects.filter(name="web1").update(cluster="example", heartbeat_at=timezone.now())
    assert _registered_sentinel("deploy-web1") == (
        None,
        "the host registry has cluster 'example' running there",
    )
