"""Deploys a kill interrupted: found, and marked by the next deploy (never a live one waiting)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from django_zerodeploy.models import DeploymentStep
from django_zerodeploy.pipeline import interrupted
from tests.support.deployments import make


@pytest.mark.django_db
def test_running_records_are_marked_interrupted():
    dead = make("running", "d" * 40, 3, pid=999999)
    DeploymentStep.objects.create(deployment=dead, name="migrate", status="running")
    DeploymentStep.objects.create(deployment=dead, name="reload", status="pending")
    current = make("running", "e" * 40, 0, pid=os.getpid())
    stale = interrupted.interrupted_candidates(exclude=current.pk)
    assert stale == [dead]
    assert interrupted.mark_interrupted(stale, os.getpid()) == [dead.pk]
    dead.refresh_from_db()
    assert dead.status == "interrupted" and dead.finished_at
    assert f"pid {os.getpid()}" in dead.message
    assert [(s.name, s.status) for s in dead.steps.all()] == [("migrate", "failed")]


@pytest.mark.django_db
def test_a_live_process_waiting_for_the_lock_is_not_interrupted():
    """An admin deploy's django-q2 worker marks its record running, then waits for the lock:
    the deploy holding the lock must not take it for a dead one."""
    waiter = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.2)
        waiting = make("running", "f" * 40, 0, pid=waiter.pid)
        current = make("running", "e" * 40, 0, pid=os.getpid())
        assert interrupted.interrupted_candidates(exclude=current.pk) == []
    finally:
        waiter.kill()
        waiter.wait()
    assert interrupted.interrupted_candidates(exclude=current.pk) == [waiting]
