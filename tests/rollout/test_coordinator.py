"""Rolling deploys across three hosts on loopback: each its own checkout, runtime directory,
Gunicorn and qcluster (``Q_CLUSTER_NAME=deploy-<host>``), one shared PostgreSQL database, a
real HAProxy in front checking ``GET /healthz/``, load through HAProxy during every rollout.

One module-scoped fleet serves the cases in order (each starts from the state the previous one
left, which it asserts first): bounded for CI on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from django_zerodeploy import exit_codes
from tests.rollout.conftest import NAMES
from tests.support.fleet import good_rollout, listed_releases, rollout_under_load
from tests.support.fleet import releases as _releases
from tests.support.gunicorn import wait_for
from tests.support.load import LoadGenerator
from tests.support.site import git

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

BREAK = 'def home(request):\n    if os.environ.get("EXAMPLE_BREAK"):\n        raise RuntimeError("broken on this host")\n'


def broken_views(site) -> str:
    """notes/views.py whose home page fails on the host where EXAMPLE_BREAK is set (web2)."""
    text = (site.dev / "notes" / "views.py").read_text()
    return "import os\n" + text.replace("def home(request):\n", BREAK, 1)


def test_hosts_list_shows_each_cluster_and_the_release_its_gunicorn_serves(fleet):
    text = fleet.coordinator("--hosts", "--list").stdout
    for name in NAMES:
        assert name in text and f"deploy-{name}" in text
    v1 = fleet.hosts[0].site.server_head()
    assert set(_releases(fleet).values()) == {v1}
    # web3's checkout moves on without a reload: the registry keeps what its Gunicorn serves
    web3 = fleet.host("web3").site
    git(web3.server, "-c", "user.name=Ops", "-c", "user.email=ops@example.com", "commit", "-q",
        "--allow-empty", "-m", "not deployed")  # fmt: skip
    committed = time.monotonic()

    def beaten_since() -> dict | None:  # every host's heartbeat is newer than the commit
        rows = listed_releases(fleet)
        age = time.monotonic() - committed
        fresh = all(
            r["heartbeat_age"] is not None and r["heartbeat_age"] < age - 0.2 for r in rows.values()
        )
        return rows if fresh else None

    try:
        assert web3.server_head() != v1
        rows = wait_for(beaten_since, timeout=30)
        assert rows, fleet.coordinator("--hosts", "--list").stdout
    finally:
        git(web3.server, "reset", "-q", "--hard", v1)
    assert {
        n: (r["release"], r["release_from_checkout"]) for n, r in rows.items()
    } == dict.fromkeys(NAMES, (v1, False))


def test_rollout_batch_1_drains_each_host_before_it_switches(fleet):
    result = good_rollout(fleet, "v2", "--batch", "1")
    assert "Rolled out" in result.stdout
    v2 = fleet.hosts[0].site.server_head()
    rows = listed_releases(fleet)
    assert {n: r["release"] for n, r in rows.items()} == dict.fromkeys(NAMES, v2)
    text = fleet.coordinator("--hosts", "--list").stdout
    for name in NAMES:
        assert f"{name:<20} {v2[:10]} " in text, text
    assert "*" not in text  # every release read from the host's /healthz/, none from a checkout


def test_rollout_batch_2_and_json(fleet):
    v3 = fleet.hosts[0].site.commit_release("v3")
    result, report, watcher = rollout_under_load(fleet, "all", "--batch", "2", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "succeeded" and data["target_sha"] == v3
    assert data["progress"] == dict.fromkeys(NAMES, "switched")
    assert _releases(fleet) == dict.fromkeys(NAMES, v3)
    switches = watcher.switches()
    assert sorted(name for name, _ in switches) == NAMES, switches
    assert all(status.startswith(("DOWN", "MAINT")) for _, status in switches), switches


def test_two_rollouts_at_once_then_the_coordinator_killed_is_recovered(fleet):
    v3 = fleet.hosts[0].site.server_head()
    v4 = fleet.hosts[0].site.commit_release("v4")
    site = fleet.hosts[0].site
    load = LoadGenerator(port=fleet.haproxy.port, clients=3, max_seconds=480, timeout=30).start()
    try:
        with load.operation():
            first = subprocess.Popen(
                [sys.executable, "manage.py", "deploy", "--hosts", "all"],
                cwd=site.server,
                env=site.env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            try:
                seen = _read_until(first, "web1: drained")
                second = fleet.coordinator("--hosts", "all")  # while the first one runs
                seen += _read_until(first, "web1: switched")
            finally:
                os.kill(first.pid, signal.SIGKILL)  # the coordinator dies mid-rollout
                first.wait(10)
            assert _releases(fleet)["web1"] == v4 and _releases(fleet)["web3"] == v3, seen
            deadline = time.monotonic() + 60
            while True:  # its lock goes stale without its heartbeat
                third = fleet.coordinator("--hosts", "all")
                if third.returncode != exit_codes.LOCKED or time.monotonic() > deadline:
                    break
                time.sleep(2)
    finally:
        report = load.stop()
    report.assert_covered()
    assert report.failed == 0, report.summary()
    assert second.returncode == exit_codes.LOCKED, second.stdout + second.stderr
    assert "is running" in second.stderr
    assert third.returncode == 0, third.stdout + third.stderr
    assert "was interrupted" in third.stdout and "undoing it first" in third.stdout
    assert "web1: rolled back" in third.stdout
    assert _releases(fleet) == dict.fromkeys(NAMES, v4)


def _read_until(proc, text: str, timeout: float = 300) -> str:
    """The coordinator's output up to the line holding ``text``."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return "".join(lines)
    raise AssertionError(f"{text!r} not seen in:\n{''.join(lines)}")


def test_release_failing_on_the_second_host_stops_and_rolls_back(fleet):
    before = fleet.hosts[0].site.server_head()
    fleet.hosts[0].site.commit_release(
        "v5-broken", files={"notes/views.py": broken_views(fleet.hosts[0].site)}
    )
    result, report, watcher = rollout_under_load(fleet, "all")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "stopped at web2" in result.stderr, result.stderr
    assert _releases(fleet) == dict.fromkeys(NAMES, before)  # web1 rolled back, web3 untouched
    assert all(status.startswith(("DOWN", "MAINT")) for _, status in watcher.switches())
    assert "web3: untouched" in result.stdout
    assert report.markers["v5-broken"] > 0  # web1 served it until rolled back


def test_batch_2_a_batch_mate_failing_rolls_back_the_host_it_deployed_first(fleet):
    """Batch [web1, web2]: web1 deploys first (it resolves the target), then web2 fails. web1
    serves the new release but was never resumed; it must go back too, not just be resumed."""
    before = _releases(fleet)
    assert len(set(before.values())) == 1, before
    fleet.hosts[0].site.commit_release("v6-broken")  # dev's views still fail on web2
    result, report, watcher = rollout_under_load(fleet, "all", "--batch", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "stopped at web2" in result.stderr, result.stderr
    assert "web1: rolled back" in result.stdout, result.stdout
    assert "web3: untouched" in result.stdout
    assert _releases(fleet) == before
    assert all(status.startswith(("DOWN", "MAINT")) for _, status in watcher.switches())
    assert report.markers.get("v6-broken", 0) == 0  # drained throughout: never served


def test_a_host_without_its_cluster_is_refused_before_any_change(fleet):
    before = _releases(fleet)
    fleet.host("web3").cluster.stop()
    result = fleet.coordinator("--hosts", "all")
    assert result.returncode == 1
    assert "web3" in result.stderr and "did not answer" in result.stderr, result.stderr
    assert "nothing was changed" in result.stderr
    assert _releases(fleet) == before
