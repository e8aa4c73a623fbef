"""The fleet of three hosts the rollout tests share (tests/support/fleet.py), once per module.

Parametrized by broker: django-q2's ORM broker on the shared PostgreSQL database unless a
module asks for another (``pytest.mark.parametrize("fleet", ["redis"], indirect=True)``).
"""

from __future__ import annotations

import shutil

import pytest

from tests.support.fleet import running_fleet

NAMES = ["web1", "web2", "web3"]
HOST_ENV = {"web2": {"EXAMPLE_BREAK": "1"}}  # a release may fail on web2 only


@pytest.fixture(scope="module")
def fleet(request, tmp_path_factory):
    if not shutil.which("psql"):
        pytest.fail("psql is needed to create the shared test database")
    broker = getattr(request, "param", "orm")
    root = tmp_path_factory.mktemp(f"fleet-{broker}")
    with running_fleet(root, NAMES, HOST_ENV, broker=broker) as made:
        yield made
