"""The deploy console's own pages (``admin.deployments``): who may see and start what, the
history and the detail page (its steps on one time axis), and the cluster warning."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_zerodeploy.models import Deployment, DeploymentStep
from tests.support.admin import (
    ROLES,
    client_for,
    isolated,  # noqa: F401  (an autouse fixture)
    succeeded,
    timed_steps,
    url,
)

pytestmark = pytest.mark.django_db(transaction=True)


# -- the permission matrix ------------------------------------------------------------------------
EXPECTED = {
    # (method, page): {role: status}
    ("get", "changelist"): {
        "anonymous": 302,
        "staff": 403,
        "viewer": 200,
        "trigger": 200,
        "superuser": 200,
    },
    ("get", "change"): {
        "anonymous": 302,
        "staff": 403,
        "viewer": 200,
        "trigger": 200,
        "superuser": 200,
    },
    ("get", "progress"): {
        "anonymous": 302,
        "staff": 403,
        "viewer": 200,
        "trigger": 200,
        "superuser": 200,
    },
    ("get", "deploy"): {
        "anonymous": 302,
        "staff": 403,
        "viewer": 403,
        "trigger": 200,
        "superuser": 200,
    },
    ("post", "deploy"): {
        "anonymous": 302,
        "staff": 403,
        "viewer": 403,
        "trigger": 302,
        "superuser": 302,
    },
    ("get", "rollback"): {
        "anonymous": 302,
        "staff": 403,
        "viewer": 403,
        "trigger": 200,
        "superuser": 200,
    },
    ("post", "rollback"): {
        "anonymous": 302,
        "staff": 403,
        "viewer": 403,
        "trigger": 302,
        "superuser": 302,
    },
    ("get", "delete"): {
        "anonymous": 302,
        "staff": 403,
        "viewer": 403,
        "trigger": 403,
        "superuser": 200,
    },
    ("get", "add"): {
        "anonymous": 302,
        "staff": 403,
        "viewer": 403,
        "trigger": 403,
        "superuser": 403,
    },
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "page"), list(EXPECTED))
def test_permission_matrix(django_user_model, role, method, page):
    record = succeeded()
    client = client_for(django_user_model, role)
    args = () if page in ("changelist", "deploy", "add") else (record.pk,)
    response = getattr(client, method)(url(page, *args))
    expected = EXPECTED[(method, page)][role]
    assert response.status_code == expected, (role, method, page, response.status_code)
    if role == "anonymous":
        assert response["Location"].startswith(reverse("admin:login"))
    started = Deployment.objects.exclude(pk=record.pk)
    if method == "post" and expected == 302 and role != "anonymous":
        new = started.get()
        assert new.status == Deployment.Status.QUEUED
        assert response["Location"] == url("change", new.pk)
    else:
        assert not started.exists()


def test_staff_with_every_model_permission_but_superuser_still_cannot_delete(django_user_model):
    user = django_user_model.objects.create_user("almost", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="django_zerodeploy")
    )
    client = Client()
    client.force_login(user)
    record = succeeded()
    assert client.get(url("delete", record.pk)).status_code == 403
    assert client.post(url("delete", record.pk), {"post": "yes"}).status_code == 403
    assert Deployment.objects.filter(pk=record.pk).exists()
    assert client.get(url("change", record.pk)).status_code == 200
    assert client.post(url("change", record.pk), {"status": "failed"}).status_code == 403
    assert Deployment.objects.get(pk=record.pk).status == Deployment.Status.SUCCEEDED


def test_superuser_may_delete(django_user_model):
    client = client_for(django_user_model, "superuser")
    record = succeeded()
    response = client.post(url("delete", record.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Deployment.objects.filter(pk=record.pk).exists()


def test_buttons_only_for_users_who_may_use_them(django_user_model):
    record = succeeded()
    viewer = client_for(django_user_model, "viewer")
    page = viewer.get(url("changelist")).content.decode()
    assert "Deploy now" not in page
    detail = viewer.get(url("change", record.pk)).content.decode()
    assert "Roll back to this release" not in detail
    trigger = client_for(django_user_model, "trigger")
    page = trigger.get(url("changelist")).content.decode()
    assert f'href="{url("deploy")}"' in page and "Deploy now" in page
    detail = trigger.get(url("change", record.pk)).content.decode()
    assert f'href="{url("rollback", record.pk)}"' in detail
    assert 'value="Delete"' not in detail and ">Delete<" not in detail


# -- the cluster warning ----------------------------------------------------------------------
def test_unknown_cluster_state_is_said_plainly(django_user_model, settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "qcluster": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    page = client_for(django_user_model, "viewer").get(url("changelist")).content.decode()
    assert "Cannot tell whether a django-q2 cluster runs" in page
    assert "LocMemCache" in page


# -- history and detail -----------------------------------------------------------------------
def test_history_columns_newest_first_search_and_filters(django_user_model):
    old = succeeded(sha="4" * 40, subject="Add the notes page")
    new = Deployment.objects.create(
        status=Deployment.Status.ROLLED_BACK,
        trigger=Deployment.Trigger.WEBHOOK,
        username="github:octocat",
        host="web2",
        ref="main",
        target_sha="5" * 40,
        subject="Broken release",
        started_at=timezone.now() - timedelta(seconds=75),
        finished_at=timezone.now(),
    )
    client = client_for(django_user_model, "viewer")
    page = client.get(url("changelist")).content.decode()
    assert page.index(f"#{new.pk}") < page.index(f"#{old.pk}")  # newest first
    assert '<span class="zd-badge zd-rolled_back" data-zd-status>rolled back</span>' in page
    assert '<span class="zd-badge zd-succeeded" data-zd-status>succeeded</span>' in page
    assert "5555555555</code>" in page and "Broken release" in page
    assert "1 min 15 s" in page and "42.0 s" in page
    assert "github:octocat" in page and "web2" in page
    for title in ("By status", "By trigger", "By host", "By created at"):
        assert title in page
    for term, expected, other in (
        ("4444444", old, new),
        ("notes page", old, new),
        ("octocat", new, old),
        ("Broken", new, old),
    ):
        found = client.get(url("changelist"), {"q": term}).content.decode()
        assert f"#{expected.pk}<" in found and f"#{other.pk}<" not in found, term
    filtered = client.get(url("changelist"), {"trigger__exact": "webhook"}).content.decode()
    assert f"#{new.pk}<" in filtered and f"#{old.pk}<" not in filtered


def test_detail_shows_steps_outputs_commits_and_neighbours(django_user_model):
    first = succeeded(sha="6" * 40)
    record = succeeded(sha="7" * 40, subject="Second release")
    last = succeeded(sha="8" * 40)
    DeploymentStep.objects.create(
        deployment=record,
        position=0,
        name="fetch",
        status="ok",
        detail="fetched origin",
        duration=0.25,
        returncode=0,
        output="From origin\n * branch main -> FETCH_HEAD <b>not html</b>",
    )
    DeploymentStep.objects.create(
        deployment=record,
        position=1,
        name="migrate",
        status="skipped",
        detail="no unapplied migrations",
    )
    page = client_for(django_user_model, "viewer").get(url("change", record.pk)).content.decode()
    assert f"Deploy #{record.pk}" in page
    assert (
        '<pre class="zd-output">From origin\n * branch main -&gt; FETCH_HEAD &lt;b&gt;not html&lt;/b&gt;</pre>'
        in page
    )
    assert "0.25 s" in page and "no unapplied migrations" in page
    assert "7777777777</code> Second release" in page and "2222222222</code> Older commit" in page
    assert (
        f'href="{url("change", first.pk)}"' in page and f'href="{url("change", last.pk)}"' in page
    )
    assert 'data-zd-finished="true"' in page
    assert "django_zerodeploy/deployment_live.js" in page
    assert "django_zerodeploy/deployments.css" in page


def test_detail_page_draws_the_steps_as_bars_on_one_time_axis(django_user_model):
    record = succeeded()
    timed_steps(
        record,
        [("lock", 0.0, 0.01, "ok"), ("build", 0.5, 1.5, "ok"), ("reload", 2.0, 2.0, "failed")],
    )
    DeploymentStep.objects.create(deployment=record, position=3, name="migrate", status="skipped")
    page = client_for(django_user_model, "viewer").get(url("change", record.pk)).content.decode()
    assert "<h2>Timeline</h2>" in page
    bars = re.findall(
        r'zd-timeline-bar zd-bar-(\w+)" style="margin-left:([\d.]+)%;width:([\d.]+)%"', page
    )
    assert bars == [
        ("ok", "0.00", "0.40"),  # a few milliseconds still shows as a mark
        ("ok", "12.50", "37.50"),
        ("failed", "50.00", "50.00"),
    ]
    assert "migrate" not in re.sub(r"<table.*?</table>", "", page, flags=re.S).split("Timeline")[1]
