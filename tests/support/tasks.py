"""Fixtures of the django-q2 task tests: settings where the real pipeline stops at its
environment check, and a queued record to run."""

from __future__ import annotations

from pathlib import Path

import pytest

from django_zerodeploy.models import Deployment


@pytest.fixture
def isolated(settings, tmp_path: Path) -> None:
    """REPO_DIR is not a git checkout, so the real pipeline stops at its environment check
    (never touching the checkout this suite runs from); heartbeats go to an empty file cache."""
    (tmp_path / "not-a-checkout").mkdir()
    settings.ZERODEPLOY = {
        **settings.ZERODEPLOY,
        "REPO_DIR": str(tmp_path / "not-a-checkout"),
        "RUNTIME_DIR": str(tmp_path / "run"),
    }
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "qcluster": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "qcache"),
        },
    }


def queued(**options) -> Deployment:
    return Deployment.objects.create(
        status=Deployment.Status.QUEUED, trigger="admin", username="alice", options=options
    )
