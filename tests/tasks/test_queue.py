"""Enqueueing (``tasks.queue``) waits for the record to be committed: a worker never sees the
task without its record, and a rolled-back request enqueues nothing."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from django_zerodeploy.models import Deployment
from django_zerodeploy.tasks.queue import queue_deployment
from tests.support.tasks import isolated  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated")]


# -- enqueueing -------------------------------------------------------------------------------
def _seen_from_another_connection() -> tuple[int, int]:
    counts: list[tuple[int, int]] = []

    def look():
        try:
            counts.append((Deployment.objects.count(), OrmQ.objects.count()))
        finally:
            connection.close()

    thread = threading.Thread(target=look)
    thread.start()
    thread.join(30)
    return counts[0]


def test_record_and_task_become_visible_together():
    """A worker (another connection) never sees the task without its record."""
    with transaction.atomic():
        record = queue_deployment(trigger="admin", username="bob", ref="v3", options={"ref": "v3"})
        assert _seen_from_another_connection() == (0, 0)
    assert _seen_from_another_connection() == (1, 1)
    record.refresh_from_db()
    assert record.task_id and record.status == Deployment.Status.QUEUED
    assert SignedPackage.loads(OrmQ.objects.get().payload)["args"] == (record.pk,)


def test_a_rolled_back_transaction_enqueues_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        queue_deployment(trigger="admin", username="bob")
        raise RuntimeError("request failed")
    assert not OrmQ.objects.exists() and not Deployment.objects.exists()
