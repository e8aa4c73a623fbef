"""Fixtures every test reuses: a real example site in git, real Gunicorn, a real load; and the
suite's own guards: the skip allow-list under CI (tests/support/skips.py) and per-test time
ceilings (pytest-timeout)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.gunicorn import Gunicorn
from tests.support.load import LoadGenerator
from tests.support.qcluster import QCluster
from tests.support.site import Site, make_site

pytest_plugins = ["tests.support.skips"]

# A test that hangs is stopped (with a traceback) instead of eating the CI budget. pyproject's
# `timeout` is the ceiling for integration tests; a fast test gets this one unless it sets its own.
FAST_TEST_TIMEOUT = 120


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("integration") is None and not item.get_closest_marker(
            "timeout"
        ):
            item.add_marker(pytest.mark.timeout(FAST_TEST_TIMEOUT))


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """origin, dev and server clones of the example project, migrated and collected."""
    return make_site(tmp_path / "site")


@pytest.fixture
def gunicorn_factory(site: Site) -> Iterator[Callable[..., Gunicorn]]:
    """Start Gunicorn masters for ``site``; every one is stopped at teardown."""
    started: list[Gunicorn] = []

    def start(**kwargs: object) -> Gunicorn:
        server = Gunicorn(site, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def gunicorn(gunicorn_factory: Callable[..., Gunicorn]) -> Gunicorn:
    """A running Gunicorn (2 sync workers, TCP on a free loopback port)."""
    return gunicorn_factory()


@pytest.fixture
def load_factory() -> Iterator[Callable[..., LoadGenerator]]:
    """Bounded load generators; any still running at teardown are stopped."""
    made: list[LoadGenerator] = []

    def make(**kwargs: object) -> LoadGenerator:
        gen = LoadGenerator(**kwargs)  # type: ignore[arg-type]
        made.append(gen)
        return gen

    yield make
    for gen in made:
        gen.stop()


@pytest.fixture
def qcluster_factory() -> Iterator[Callable[..., QCluster]]:
    """Start real `manage.py qcluster` processes; every one is stopped at teardown."""
    started: list[QCluster] = []

    def start(site: Site, **env: str) -> QCluster:
        cluster = QCluster(site, **env)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    """A RUNTIME_DIR of the test's own (mode 0700, as the deploy wants it)."""
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path
