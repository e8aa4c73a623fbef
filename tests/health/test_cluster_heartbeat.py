"""The ``django-q:clusters`` health check on a routed host (``ZERODEPLOY_HOST=web1``, deploys
go to cluster ``deploy-web1``), with real qclusters started with ``Q_CLUSTER_NAME`` set, on the
ORM broker (heartbeats in the shared file cache) and on the Redis broker (heartbeats in Redis).

django-q2 keeps every cluster's heartbeat under ``Q_CLUSTER["name"]``, whatever queue it reads;
the check tells this host's cluster from another host's by the host registry's row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fleet import claim_redis_db, release_redis_db
from tests.support.gunicorn import wait_for
from tests.support.qcluster import QCluster
from tests.support.site import Site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

WEB1 = {"ZERODEPLOY_HOST": "web1"}
WEB2 = {"ZERODEPLOY_HOST": "web2", "Q_CLUSTER_NAME": "deploy-web2"}


@pytest.fixture(params=["orm", "redis"])
def broker_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Environment choosing django-q2's broker: the ORM one, or a Redis database of our own."""
    if request.param == "orm":
        yield {}
        return
    owner = f"qhealth-{uuid.uuid4().hex}"
    number = claim_redis_db(owner)
    try:
        yield {"EXAMPLE_Q_REDIS": f"redis://127.0.0.1:6379/{number}"}
    finally:
        release_redis_db(number, owner)


def clusters_check(site: Site, env: dict[str, str]) -> dict[str, Any]:
    """This host's ``django-q:clusters`` entry, as ``manage.py healthz --json`` reports it."""
    result = site.manage("healthz", "--json", check=False, **env, **WEB1)
    doc = json.loads(result.stdout)
    (entry,) = doc["checks"]["django-q:clusters"]
    return entry


def wait_status(site: Site, env: dict[str, str], status: str) -> dict[str, Any] | None:
    def seen() -> dict[str, Any] | None:
        entry = clusters_check(site, env)
        return entry if entry["status"] == status else None

    return wait_for(seen, timeout=60, interval=1)


def test_routed_host_sees_its_own_cluster_only(site: Site, broker_env: dict[str, str]) -> None:
    entry = clusters_check(site, broker_env)
    assert entry["status"] == "warn"
    assert entry["output"] == "no heartbeat from cluster deploy-web1 on host web1", entry

    # another host's cluster beats where this one's would: it is not this host's
    web2 = QCluster(site, **broker_env, **WEB2)
    try:
        assert wait_for(lambda: clusters_check(site, broker_env)["observedValue"] == 1, 60, 1), (
            web2.log_text()
        )
        entry = clusters_check(site, broker_env)
        assert entry["status"] == "warn", entry
        assert entry["output"] == "no heartbeat from cluster deploy-web1 on host web1", entry

        web1 = QCluster(site, **broker_env, **WEB1, Q_CLUSTER_NAME="deploy-web1")
        try:
            passed = wait_status(site, broker_env, "pass")
            assert passed, web1.log_text()
            assert passed["observedValue"] == 2
        finally:
            assert web1.stop() is not None
        warned = wait_status(site, broker_env, "warn")
        assert warned, web2.log_text()
        assert warned["output"] == "no heartbeat from cluster deploy-web1 on host web1", warned
        assert warned["observedValue"] == 1  # web2's cluster still runs
    finally:
        web2.stop()
