"""Helpers of the admin console's tests: users of each role, a succeeded deploy record, the
console's URLs, and settings that never plan against the checkout this suite runs from."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_zerodeploy.models import Deployment, DeploymentStep

ROLES = ["anonymous", "staff", "viewer", "trigger", "superuser"]


@pytest.fixture(autouse=True)
def isolated(settings, tmp_path):
    """Never plan against the real checkout this suite runs from: REPO_DIR is a folder that is
    not a git checkout (the plan then explains that), and the cluster heartbeat cache is a
    file cache of this test's own (empty: no cluster runs)."""
    (tmp_path / "not-a-checkout").mkdir()
    settings.ZERODEPLOY = {
        **settings.ZERODEPLOY,
        "REPO_DIR": str(tmp_path / "not-a-checkout"),
        "RUNTIME_DIR": str(tmp_path / "run"),
        "GUNICORN_PIDFILE": None,
        "HEALTHZ_URL": None,
    }
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "qcluster": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "qcache"),
        },
    }


def make_user(django_user_model, role):
    if role == "anonymous":
        return None
    user = django_user_model.objects.create_user(
        role, password="pw", is_staff=True, is_superuser=role == "superuser"
    )
    codenames = {"viewer": ["view_deployment"], "trigger": ["trigger_deploy"]}.get(role, [])
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def client_for(django_user_model, role, **kwargs):
    client = Client(**kwargs)
    user = make_user(django_user_model, role)
    if user:
        client.force_login(user)
    return client


def succeeded(sha="1" * 40, subject="Release v1", **extra):
    now = timezone.now()
    values = {
        "status": Deployment.Status.SUCCEEDED,
        "trigger": Deployment.Trigger.CLI,
        "username": "deployer",
        "host": "web1",
        "ref": "origin/main",
        "target_sha": sha,
        "previous_sha": "0" * 40,
        "subject": subject,
        "started_at": now - timedelta(seconds=42),
        "finished_at": now,
        "commits": [[sha, subject], ["2" * 40, "Older commit"]],
        **extra,
    }
    return Deployment.objects.create(**values)


def url(name, *args):
    return reverse(f"admin:django_zerodeploy_deployment_{name}", args=args)


def timed_steps(record: Deployment, steps: list[tuple[str, float, float, str]]) -> None:
    """Step rows for ``record``: (name, seconds after its start, duration, status) each."""
    for position, (name, offset, seconds, status) in enumerate(steps):
        DeploymentStep.objects.create(
            deployment=record,
            position=position,
            name=name,
            status=status,
            started_at=record.started_at + timedelta(seconds=offset),
            duration=seconds,
        )
