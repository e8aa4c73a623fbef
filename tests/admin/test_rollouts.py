"""The hosts page and the rollouts in the admin: read-only, shown to users who may view
deploys or start them, each host's release, heartbeat and state, each rollout batch by batch."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from django_zerodeploy.models import Host, Rollout

pytestmark = pytest.mark.django_db

HOSTS = "/admin/django_zerodeploy/host/"


@pytest.fixture
def hosts():
    now = timezone.now()
    Host.objects.create(name="web1", cluster="deploy-web1", release="a" * 40, heartbeat_at=now)
    Host.objects.create(
        name="web2", cluster="deploy-web2", release="a" * 40, heartbeat_at=now, drained=True
    )
    Host.objects.create(
        name="web3",
        cluster="deploy-web3",
        release="b" * 40,
        heartbeat_at=now - timedelta(hours=1),
        release_from_checkout=True,
        release_problem="no HEALTHZ_URL",
    )


def client_for(django_user_model, codename: str | None, superuser: bool = False) -> Client:
    user = django_user_model.objects.create_user(
        "u", password="pw", is_staff=True, is_superuser=superuser
    )
    if codename:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("codename", ["trigger_deploy", "view_host"])
def test_hosts_page_shows_release_heartbeat_and_state(hosts, django_user_model, codename):
    page = client_for(django_user_model, codename).get(HOSTS).content.decode()
    assert "web1" in page and "deploy-web2" in page and "a" * 10 in page
    for state in ("up", "drained", "no cluster"):
        assert f">{state}<" in page, state
    # web3's release came from its checkout, not from what its Gunicorn serves
    assert '<code>bbbbbbbbbb</code> <span title="no HEALTHZ_URL">(checkout)</span>' in page
    assert page.count("(checkout)") == 1


def test_staff_without_permission_cannot_see_hosts(hosts, django_user_model):
    assert client_for(django_user_model, None).get(HOSTS).status_code == 403


def test_nobody_adds_or_edits_a_host_a_superuser_may_delete_one(hosts, django_user_model):
    client = client_for(django_user_model, None, superuser=True)
    assert client.get(HOSTS + "add/").status_code == 403
    web3 = Host.objects.get(name="web3")
    page = client.get(f"{HOSTS}{web3.pk}/change/").content.decode()
    assert 'name="name"' not in page  # read-only fields, no form inputs
    client.post(f"{HOSTS}{web3.pk}/delete/", {"post": "yes"})
    assert not Host.objects.filter(name="web3").exists()


def test_rollout_detail_lists_hosts_batch_by_batch(django_user_model):
    rollout = Rollout.objects.create(
        status=Rollout.Status.ROLLED_BACK,
        target_sha="c" * 40,
        batches=[["web1"], ["web2"], ["web3"]],
        progress={"web1": "rolled back", "web2": "failed (#2, failed)", "web3": "untouched"},
        message="Rollout stopped at web2: deploy #2 failed",
    )
    client = client_for(django_user_model, "trigger_deploy")
    listing = client.get("/admin/django_zerodeploy/rollout/").content.decode()
    assert f"#{rollout.pk}" in listing and "Rollout stopped at web2" in listing
    detail = client.get(f"/admin/django_zerodeploy/rollout/{rollout.pk}/change/").content.decode()
    assert "<td>batch 2</td><td>web2</td><td>failed (#2, failed)</td>" in detail
    assert "<td>batch 3</td><td>web3</td><td>untouched</td>" in detail
