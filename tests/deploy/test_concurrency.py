"""Deploys that meet each other, get killed, or cross long requests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.deploy.test_deploy import assert_clean_checkout, db_rows, deploy, history, show, step
from tests.support.gunicorn import wait_for
from tests.support.site import Site

pytestmark = pytest.mark.integration

SLOW_MIGRATION = (
    "import time\n"
    "from django.db import migrations, models\n\n"
    "def slow(apps, schema_editor):\n"
    "    time.sleep({seconds})\n\n"
    "class Migration(migrations.Migration):\n"
    "    dependencies = [('notes', '0001_initial')]\n"
    "    operations = [\n"
    "        migrations.CreateModel('Tag', [('id', models.BigAutoField(primary_key=True)),"
    " ('name', models.CharField(max_length=20, null=True))]),\n"
    "        migrations.RunPython(slow, migrations.RunPython.noop),\n"
    "    ]\n"
)


@pytest.fixture
def start_deploy():
    """Start deploys in the background, as a second operator would; any still running at
    teardown (a failed assertion) is killed by its pid and reaped."""
    started: list[subprocess.Popen[str]] = []

    def start(site: Site, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "deploy", "--no-input", *args],
            cwd=site.server,
            env=site.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def step_status(site: Site, name: str) -> str | None:
    with contextlib.suppress(Exception):
        rows = db_rows(
            site,
            "SELECT status FROM django_zerodeploy_deploymentstep WHERE name = ? "
            "ORDER BY id DESC LIMIT 1",
            name,
        )
        return rows[0][0] if rows else None
    return None


def lock_holder(site: Site) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((site.runtime / "deploy.lock").read_text() or "{}")
    return {}


def test_two_deploys_at_once(site, gunicorn_factory, load_factory, start_deploy):
    server = gunicorn_factory(workers=2)
    v2 = site.commit_release(
        "v2", {"notes/migrations/0002_slow.py": SLOW_MIGRATION.format(seconds=6)}
    )
    load = load_factory(port=server.port, clients=3, max_seconds=240, timeout=30).start()
    try:
        with load.operation():
            first = start_deploy(site)
            assert wait_for(lambda: step_status(site, "migrate") == "running", timeout=120), (
                first.pid
            )
            holder = lock_holder(site)
            assert holder["pid"] == first.pid and holder["deployment_id"]

            second = deploy(site)  # exits at once, naming the running deploy
            assert second.returncode == 4, show(second)
            message = second.stdout + second.stderr
            assert f"pid {first.pid}" in message and "since" in message
            assert f"deployment #{holder['deployment_id']}" in message

            waiting = start_deploy(site, "--wait-lock", "180")  # waits its turn instead
            out, err = first.communicate(timeout=240)
            assert first.returncode == 0, out + err
            out3, err3 = waiting.communicate(timeout=240)
            assert waiting.returncode == 0, out3 + err3
            assert "waiting up to 180 s" in out3
            assert "Nothing to deploy" in out3  # the first deploy already delivered v2
    finally:
        report = load.stop()
    report.assert_covered()
    assert report.failed == 0, report.summary()
    assert server.served_releases() == {"v2"}
    assert_clean_checkout(site, v2)
    statuses = [r["status"] for r in history(site)]
    assert statuses == ["nothing", "succeeded"]  # the refused one left no record


def test_deploy_killed_during_a_slow_migration_then_a_successful_one(
    site, gunicorn_factory, load_factory, start_deploy
):
    server = gunicorn_factory(workers=2)
    v1 = site.server_head()
    v2 = site.commit_release(
        "v2", {"notes/migrations/0002_slow.py": SLOW_MIGRATION.format(seconds=8)}
    )
    load = load_factory(port=server.port, clients=3, max_seconds=240, timeout=30).start()
    try:
        with load.operation():
            killed = start_deploy(site)
            assert wait_for(lambda: step_status(site, "migrate") == "running", timeout=120)
            time.sleep(1.0)  # well inside the migration
            os.kill(killed.pid, signal.SIGKILL)
            killed.communicate(timeout=30)
            # the record is honest: still "running"; the live tree holds v2, the workers serve v1
            assert (
                db_rows(site, "SELECT status FROM django_zerodeploy_deployment")[0][0] == "running"
            )
            assert site.server_head() == v2 and server.served_releases() == {"v1"}

            result = deploy(site)
            assert result.returncode == 0, show(result)
            assert "interrupted" in result.stdout
            assert (
                "waiting up to" in result.stdout
            )  # for the migrate the killed deploy left running
    finally:
        report = load.stop()
    report.assert_covered()
    assert report.failed == 0, report.summary()
    assert server.served_releases() == {"v2"}
    assert server.healthz()["releaseId"] == v2
    assert_clean_checkout(site, v2)
    applied = db_rows(site, "SELECT name FROM django_migrations WHERE app = 'notes' ORDER BY name")
    assert [r[0] for r in applied] == ["0001_initial", "0002_slow"]  # applied once
    records = history(site)
    assert [r["status"] for r in records] == ["succeeded", "interrupted"]
    assert records[1]["message"].startswith("Interrupted")
    assert step(records[1], "migrate")["status"] == "failed"
    assert records[0]["previous_sha"] == v1  # what served, not HEAD


def test_long_request_across_a_deploy_completes(site, gunicorn_factory, load_factory):
    server = gunicorn_factory(workers=2)
    v2 = site.commit_release("v2")
    answers: list[tuple] = []
    slow = threading.Thread(target=lambda: answers.append(server.get("/slow/?s=12", timeout=60)))
    load = load_factory(port=server.port, clients=2, max_seconds=240, timeout=30).start()
    slow.start()
    time.sleep(0.5)  # the slow request is in a worker of the old release
    with load.operation():
        result = deploy(site)
    slow.join(60)
    report = load.stop()
    assert result.returncode == 0, show(result)
    report.assert_covered()
    assert report.failed == 0, report.summary()
    status, headers, body = answers[0]
    assert status == 200 and headers["x-example-release"] == "v1", (status, body)
    assert server.served_releases() == {"v2"}
    assert_clean_checkout(site, v2)
