"""Deployment rows for tests of what reads the records (bad releases, --rollback, history)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from django_zerodeploy.models import Deployment
from django_zerodeploy.pipeline import records


def make(status: str, sha: str, minutes_ago: int = 0, **extra) -> Deployment:
    when = timezone.now() - timedelta(minutes=minutes_ago)
    return Deployment.objects.create(
        status=status,
        target_sha=sha,
        created_at=when,
        started_at=when,
        finished_at=when,
        host=records.hostname(),
        **extra,
    )
