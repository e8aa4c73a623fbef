"""The django-q2 task (``django_zerodeploy.tasks``) runs a queued deploy at most once, through
the real pipeline, and never leaves its record running."""

from __future__ import annotations

import threading

import pytest
from django.core import mail
from django.db import connection

from django_zerodeploy.models import Deployment
from django_zerodeploy.tasks import claim_deployment, options_for, run_queued_deployment
from tests.support.tasks import isolated, queued  # noqa: F401  (isolated: a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated")]


# -- run once --------------------------------------------------------------------------------
def test_claim_flips_queued_to_running_once():
    record = queued()
    claimed = claim_deployment(record.pk)
    assert claimed is not None and claimed.status == Deployment.Status.RUNNING
    assert claimed.started_at is not None and claimed.pid and claimed.host
    assert claim_deployment(record.pk) is None
    assert claim_deployment(999999) is None


def test_two_workers_racing_for_the_same_record_one_wins():
    record = queued()
    barrier = threading.Barrier(4)
    winners: list[int] = []

    def worker():
        try:
            barrier.wait(10)
            if claim_deployment(record.pk) is not None:
                winners.append(threading.get_ident())
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(winners) == 1


@pytest.mark.parametrize(
    "status", ["running", "succeeded", "failed", "rolled_back", "interrupted", "nothing"]
)
def test_a_task_whose_record_is_not_queued_does_nothing(status):
    record = Deployment.objects.create(status=status, message="untouched", trigger="admin")
    result = run_queued_deployment(record.pk)
    assert result == {"deployment_id": record.pk, "skipped": True, "status": status}
    after = Deployment.objects.get(pk=record.pk)
    assert (after.status, after.message, after.started_at) == (status, "untouched", None)
    assert not after.steps.exists()


def test_a_missing_record_does_nothing():
    assert run_queued_deployment(424242)["skipped"] is True


def test_the_task_runs_the_real_pipeline_into_the_queued_record_and_a_redelivery_does_nothing(
    settings,
):
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "NOTIFY_ADMINS": True}
    settings.ADMINS = [("Ops", "ops@example.com")]
    record = queued(ref="v2", force=True, wait_lock=0)
    result = run_queued_deployment(record.pk)
    record.refresh_from_db()
    # the pipeline refused at its environment check, and said why, in this very record
    assert result["exit_code"] == 2 and result["deployment_id"] == record.pk
    assert record.status == Deployment.Status.FAILED
    assert "not a git checkout" in record.message
    assert record.trigger == "admin" and record.username == "alice"
    assert record.options["ref"] == "v2" and record.options["force"] is True
    assert record.finished_at is not None
    assert Deployment.objects.count() == 1
    # the pipeline mails the admins once; the task does not add a second mail
    assert len(mail.outbox) == 1 and "failed" in mail.outbox[0].subject
    # django-q2 delivering the task again changes nothing
    message, steps = record.message, list(record.steps.values_list("name", "status"))
    assert run_queued_deployment(record.pk)["skipped"] is True
    record.refresh_from_db()
    assert record.message == message and list(record.steps.values_list("name", "status")) == steps
    assert len(mail.outbox) == 1


def test_options_for_a_queued_record():
    record = queued(ref="main", force=True, rollback=None, wait_lock=300, unknown="ignored")
    options = options_for(record)
    assert (options.ref, options.force, options.wait_lock, options.trigger, options.username) == (
        "main",
        True,
        300,
        "admin",
        "alice",
    )
    assert options.dry_run is False and options.rollback is None


@pytest.mark.parametrize(
    ("stored", "says"),
    [
        ({"ref": "--upload-pack=touch pwned"}, "not a valid git ref"),
        ({"ref": "main", "rollback": "12"}, "--ref and --rollback cannot be used together."),
    ],
)
def test_a_queued_record_with_refused_options_fails_with_a_usage_error(settings, stored, says):
    """Options are checked when the task makes them: the record says why, once, exit 2."""
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "NOTIFY_ADMINS": True}
    settings.ADMINS = [("Ops", "ops@example.com")]
    record = queued(**stored)
    result = run_queued_deployment(record.pk)
    record.refresh_from_db()
    assert result["exit_code"] == 2 and result["deployment_id"] == record.pk
    assert record.status == Deployment.Status.FAILED and says in record.message
    assert record.finished_at is not None and not record.steps.exists()
    assert len(mail.outbox) == 1 and "failed" in mail.outbox[0].subject
    assert run_queued_deployment(record.pk)["skipped"] is True


def test_an_unusable_runtime_dir_fails_the_queued_record(settings, tmp_path):
    """RUNTIME_DIR is a file, so the lock cannot be created: the queued record still ends as
    failed (exit 2: nothing changed), with one mail, never left queued or running."""
    (tmp_path / "a-file").write_text("")
    settings.ZERODEPLOY = {
        **settings.ZERODEPLOY,
        "RUNTIME_DIR": str(tmp_path / "a-file"),
        "NOTIFY_ADMINS": True,
    }
    settings.ADMINS = [("Ops", "ops@example.com")]
    record = queued()
    result = run_queued_deployment(record.pk)
    assert result["exit_code"] == 2
    record.refresh_from_db()
    assert record.status == Deployment.Status.FAILED and record.finished_at is not None
    assert "a-file" in record.message
    assert len(mail.outbox) == 1 and f"Deploy #{record.pk} failed" in mail.outbox[0].subject


def test_a_crashing_pipeline_never_leaves_the_record_running(settings, monkeypatch):
    """The guard for a bug: a pipeline that raises instead of returning a result still ends as
    a failed record, one mail, and a failed task (the exception propagates to django-q2).
    The pipeline is replaced by one that raises: no real input makes the real one raise."""
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "NOTIFY_ADMINS": True}
    settings.ADMINS = [("Ops", "ops@example.com")]

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("django_zerodeploy.pipeline.run_deploy", crash)
    record = queued()
    with pytest.raises(OSError):
        run_queued_deployment(record.pk)
    record.refresh_from_db()
    assert record.status == Deployment.Status.FAILED and record.finished_at is not None
    assert record.message.startswith("The deploy task stopped with OSError")
    assert len(mail.outbox) == 1 and f"Deploy #{record.pk} failed" in mail.outbox[0].subject


SECRET_URL = "https://deployer:s3cr3t-token@git.example.com/site.git"


@pytest.mark.django_db
def test_a_broker_error_is_redacted_in_the_record(monkeypatch):
    from django_zerodeploy.tasks import queue

    def refuse(*args, **kwargs):
        raise ConnectionError("Error connecting to redis://:hunter2-pass@broker:6379/0")

    # replaced: django-q2 reads its broker settings once at import (no unreachable broker
    # can be configured per test), and the error text is what this test is about
    monkeypatch.setattr("django_q.tasks.async_task", refuse)
    record = Deployment.objects.create(status=Deployment.Status.QUEUED, trigger="admin")
    assert queue.enqueue_deployment(record) is None
    record.refresh_from_db()
    assert record.status == Deployment.Status.FAILED
    assert "hunter2" not in record.message and "redis://***@broker" in record.message


@pytest.mark.django_db
def test_a_task_crash_is_redacted_in_the_record():
    from django_zerodeploy import tasks

    record = Deployment.objects.create(status=Deployment.Status.RUNNING, trigger="admin")
    tasks._record_crash(record, RuntimeError(f"lost {SECRET_URL}"))
    record.refresh_from_db()
    assert "s3cr3t" not in record.message and "***@git.example.com" in record.message
