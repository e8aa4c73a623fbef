"""``deploy --history``: the objects newest first, and the table."""

from __future__ import annotations

import pytest

from django_zerodeploy.models import DeploymentStep
from django_zerodeploy.pipeline import deploy_history
from django_zerodeploy.pipeline import history as public_history
from tests.support.deployments import make


@pytest.mark.django_db
def test_history_objects_newest_first():
    older = make("succeeded", "1" * 40, 10, previous_sha="0" * 40, ref="origin/main", trigger="cli")
    DeploymentStep.objects.create(
        deployment=older, position=0, name="fetch", status="ok", duration=0.1
    )
    make("failed", "2" * 40, 1, trigger="admin")
    rows = public_history(limit=5)
    assert [r["target_sha"][0] for r in rows] == ["2", "1"]
    keys = {
        "id",
        "status",
        "previous_sha",
        "target_sha",
        "ref",
        "trigger",
        "started_at",
        "finished_at",
        "steps",
    }
    assert keys <= set(rows[0])
    assert rows[1]["steps"] == [
        {"name": "fetch", "status": "ok", "duration": 0.1, "detail": "", "returncode": None}
    ]
    assert public_history(limit=1)[0]["id"] == rows[0]["id"]
    assert "succeeded" in deploy_history.history_table(rows)
