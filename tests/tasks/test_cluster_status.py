"""The cluster status (``tasks.cluster_status``) says plainly when nothing will run a deploy."""

from __future__ import annotations

import pytest

from django_zerodeploy.tasks.cluster_status import cluster_status
from tests.support.tasks import isolated  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("isolated")]


# -- is a cluster running? --------------------------------------------------------------------
def test_no_cluster_is_said_plainly():
    status = cluster_status()
    assert status.running is False
    assert "No django-q2 cluster is running" in status.message
    assert "manage.py qcluster" in status.message


def test_routed_hint_names_the_cluster(settings):
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "Q_CLUSTER_NAME": "deploy-web1"}
    assert "Q_CLUSTER_NAME=deploy-web1 python manage.py qcluster" in cluster_status().message


def test_a_private_cache_means_unknown(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "qcluster": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
    status = cluster_status()
    assert status.running is None
    assert "Cannot tell" in status.message and "DummyCache" in status.message


def test_without_django_q_installed(settings):
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django_q"]
    status = cluster_status()
    assert status.running is False and "INSTALLED_APPS" in status.message
