"""The good rollout again, with django-q2's Redis broker (127.0.0.1:6379) instead of the ORM
one: the coordinator's tasks reach each host's cluster through its Redis list
(``django_q:deploy-<host>:q``), results still come back through the shared database.

The fleet (tests/rollout/conftest.py) claims a Redis database number of its own and deletes
its keys afterwards, so runs never share a queue.
"""

from __future__ import annotations

import pytest

from tests.rollout.conftest import NAMES
from tests.support.fleet import REDIS_HOST, REDIS_PORT, good_rollout, listed_releases, releases

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
    pytest.mark.parametrize("fleet", ["redis"], indirect=True),
]


def test_rollout_batch_1_through_a_redis_broker(fleet):
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=fleet.redis_db)
    stats = client.keys("django_q:example:cluster:*")
    assert len(stats) == len(NAMES), stats  # each host's cluster beats in Redis, not the cache
    table = fleet.hosts[0].site.manage("healthz", check=False).stdout
    line = next(row for row in table.splitlines() if "django-q:clusters" in row)
    assert f" {len(NAMES)} clusters" in line, table  # the health check reads them in Redis
    result = good_rollout(fleet, "v2", "--batch", "1")
    assert "Rolled out" in result.stdout
    rows = listed_releases(fleet)
    assert {n: r["release"] for n, r in rows.items()} == releases(fleet)
    assert not any(r["release_from_checkout"] for r in rows.values())
    for name in NAMES:  # every task was taken off its host's queue
        assert client.llen(f"django_q:deploy-{name}:q") == 0
