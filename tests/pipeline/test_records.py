"""The deploy's record as it goes: output redacted and bounded, skipped steps written with the
next write, and the shared helpers (osutil) used rather than copies of them."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.utils import timezone

from django_zerodeploy.models import DeploymentStep
from django_zerodeploy.pipeline import records
from django_zerodeploy.pipeline.records import Recorder, StepResult


def test_records_use_the_shared_helpers():
    from django_zerodeploy import osutil

    assert records.os_user is osutil.os_user
    assert not hasattr(records, "elapsed")


@pytest.mark.django_db
@override_settings(ZERODEPLOY={"KEEP_OUTPUT_BYTES": 200})
def test_recorded_output_is_redacted_and_bounded():
    recorder = Recorder(warn=lambda line: None)
    recorder.open({"status": "running", "host": records.hostname()}, ["install"], [])
    noisy = (
        "x" * 5000
        + "\nfetching https://deployer:hunter2secret@pypi.example/simple\nPIP_INDEX_URL=https://a:b@c/simple\n"
    )
    recorder.save_step(0, StepResult("install", "failed", "pip install exited 1", 1.0, 1, noisy))
    row = DeploymentStep.objects.get(deployment=recorder.deployment, name="install")
    assert "hunter2secret" not in row.output and "https://***@pypi.example" in row.output
    assert "PIP_INDEX_URL=***" in row.output
    assert len(row.output.encode()) < 300 and "output cut" in row.output


@pytest.mark.django_db
def test_skipped_steps_are_written_with_the_next_write_and_at_the_end():
    recorder = Recorder(warn=lambda line: None)
    planned = ["collectstatic", "switch", "prune", "post_migrate"]
    recorder.open({"status": "running", "host": records.hostname()}, planned, [])

    def statuses() -> list[str]:
        rows = DeploymentStep.objects.filter(deployment=recorder.deployment)
        return list(rows.order_by("position").values_list("status", flat=True))

    recorder.save_step(0, StepResult("collectstatic", "skipped", "static sources unchanged"))
    assert statuses() == ["pending"] * 4  # a skipped step changed nothing: no commit of its own
    recorder.save_step(1, StepResult("switch", "running", "", started_at=timezone.now()))
    assert statuses() == ["skipped", "running", "pending", "pending"]
    recorder.save_step(1, StepResult("switch", "ok", "current: a -> b", 0.01))
    recorder.save_step(2, StepResult("prune", "skipped", "nothing to prune"))
    recorder.drop_pending()  # the end of the deploy: the last skipped step too, no pending left
    assert statuses() == ["skipped", "ok", "skipped"]
