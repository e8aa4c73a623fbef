"""The deploy console in the admin: who may see and start what, CSRF, the confirmation page,
the queued record handed to django-q2, the cluster warning, the detail page and its JSON."""

from __future__ import annotations

import os
import re
import subprocess
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from django_zerodeploy.models import Deployment, DeploymentStep
from django_zerodeploy.tasks import run_queued_deployment

pytestmark = pytest.mark.django_db(transaction=True)

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


# -- CSRF -------------------------------------------------------------------------------------
def test_deploy_post_needs_the_csrf_token(django_user_model):
    client = client_for(django_user_model, "trigger", enforce_csrf_checks=True)
    refused = client.post(url("deploy"), {"ref": ""})
    assert refused.status_code == 403
    assert not Deployment.objects.exists()
    page = client.get(url("deploy"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    accepted = client.post(url("deploy"), {"ref": "", "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    assert Deployment.objects.get().status == Deployment.Status.QUEUED


def test_rollback_and_cancel_posts_need_the_csrf_token(django_user_model):
    record = succeeded()
    queued = Deployment.objects.create(status=Deployment.Status.QUEUED, trigger="admin")
    client = client_for(django_user_model, "trigger", enforce_csrf_checks=True)
    assert client.post(url("rollback", record.pk)).status_code == 403
    assert client.post(url("cancel", queued.pk)).status_code == 403
    assert Deployment.objects.count() == 2
    assert Deployment.objects.get(pk=queued.pk).status == Deployment.Status.QUEUED


# -- the confirmation page and the queued record ----------------------------------------------
def test_confirmation_page_shows_the_plan_or_why_there_is_none(django_user_model):
    client = client_for(django_user_model, "trigger")
    page = client.get(url("deploy")).content.decode()
    assert "What would happen (dry run)" in page
    assert "not a git checkout" in page  # the pipeline's own explanation, from the plan
    assert 'id="zd-confirm"' in page and 'name="csrfmiddlewaretoken"' in page
    assert "No django-q2 cluster is running" in page


def test_a_ref_that_could_be_an_option_is_refused_before_anything_runs(django_user_model):
    client = client_for(django_user_model, "trigger")
    page = client.get(url("deploy"), {"ref": "--upload-pack=evil"})
    assert page.status_code == 200
    assert "is not a valid git ref" in page.content.decode()
    assert 'id="zd-confirm"' not in page.content.decode()
    posted = client.post(url("deploy"), {"ref": "--upload-pack=evil"})
    assert posted.status_code == 400
    assert not Deployment.objects.exists()


def test_deploy_now_creates_a_queued_record_with_the_user_and_enqueues_it(django_user_model):
    client = client_for(django_user_model, "trigger")
    response = client.post(url("deploy"), {"ref": "v2.0", "force": "1"})
    record = Deployment.objects.get()
    assert response.status_code == 302 and response["Location"] == url("change", record.pk)
    assert record.status == Deployment.Status.QUEUED
    assert record.trigger == Deployment.Trigger.ADMIN
    assert record.user.username == "trigger" and record.username == "trigger"
    assert record.ref == "v2.0"
    assert record.options == {"ref": "v2.0", "force": True, "wait_lock": 300}
    ((row,),) = [list(OrmQ.objects.all())]
    task = SignedPackage.loads(row.payload)
    assert task["func"] == "django_zerodeploy.tasks.run_queued_deployment"
    assert task["args"] == (record.pk,)
    assert Deployment.objects.get().task_id == task["id"]
    # the browser lands on the detail page, which says the deploy waits for a cluster
    detail = client.get(response["Location"]).content.decode()
    assert f"Deploy #{record.pk} is queued" in detail
    assert "No django-q2 cluster is running" in detail
    assert "stay queued" in detail
    assert 'data-zd-finished="false"' in detail


def test_branch_head_deploy_has_no_ref(django_user_model):
    client = client_for(django_user_model, "superuser")
    client.post(url("deploy"), {"ref": ""})
    record = Deployment.objects.get()
    assert record.options == {"ref": None, "force": False, "wait_lock": 300}
    assert record.user.is_superuser


def test_rollback_queues_a_deploy_of_that_release(django_user_model):
    target = succeeded(sha="3" * 40, subject="Good old release")
    client = client_for(django_user_model, "trigger")
    page = client.get(url("rollback", target.pk)).content.decode()
    assert f"Roll back to the release of deploy #{target.pk}" in page
    assert "Good old release" in page and "What would happen (dry run)" in page
    response = client.post(url("rollback", target.pk))
    record = Deployment.objects.exclude(pk=target.pk).get()
    assert response["Location"] == url("change", record.pk)
    assert record.options == {"rollback": str(target.pk), "force": False, "wait_lock": 300}
    assert record.target_sha == "3" * 40 and record.status == Deployment.Status.QUEUED


@pytest.mark.parametrize("status", ["failed", "rolled_back", "running", "queued", "interrupted"])
def test_rollback_only_to_a_succeeded_release(django_user_model, status):
    target = succeeded(status=status)
    client = client_for(django_user_model, "trigger")
    assert "Roll back to this release" not in client.get(url("change", target.pk)).content.decode()
    response = client.post(url("rollback", target.pk), follow=True)
    assert "only a succeeded release can be rolled back to" in response.content.decode()
    assert Deployment.objects.count() == 1


def test_cancel_a_queued_deploy_and_its_task_then_does_nothing(django_user_model):
    client = client_for(django_user_model, "trigger")
    client.post(url("deploy"), {"ref": ""})
    record = Deployment.objects.get()
    detail = client.get(url("change", record.pk)).content.decode()
    assert f'action="{url("cancel", record.pk)}"' in detail
    client.post(url("cancel", record.pk))
    record.refresh_from_db()
    assert record.status == Deployment.Status.FAILED
    assert record.message == "Cancelled by trigger before it started."
    assert run_queued_deployment(record.pk)["skipped"] is True
    record.refresh_from_db()
    assert record.status == Deployment.Status.FAILED and not record.steps.exists()
    again = client.post(url("cancel", record.pk), follow=True)
    assert "only a queued deploy can be cancelled" in again.content.decode()


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


def test_progress_json(django_user_model):
    record = Deployment.objects.create(
        status=Deployment.Status.RUNNING,
        target_sha="9" * 40,
        subject="Live one",
        started_at=timezone.now(),
    )
    DeploymentStep.objects.create(
        deployment=record,
        position=0,
        name="fetch",
        status="ok",
        duration=0.5,
        returncode=0,
        output="x" * 20000,
    )
    DeploymentStep.objects.create(deployment=record, position=1, name="install", status="running")
    viewer = client_for(django_user_model, "viewer")
    data = viewer.get(url("progress", record.pk)).json()
    assert data["status"] == "running" and data["finished"] is False
    assert data["target_sha"] == "9" * 40 and data["subject"] == "Live one"
    assert [s["name"] for s in data["steps"]] == ["fetch", "install"]
    assert data["steps"][0]["returncode"] == 0 and len(data["steps"][0]["output"]) < 9000
    assert data["elapsed"] >= 0
    record.status, record.finished_at = Deployment.Status.SUCCEEDED, timezone.now()
    record.save()
    assert (
        client_for(django_user_model, "superuser")
        .get(url("progress", record.pk))
        .json()["finished"]
        is True
    )
    assert viewer.get(url("progress", 999999)).status_code == 404


# -- the confirmation page runs no code of any release ---------------------------------------
def _git(cwd, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@b.c",
           "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@b.c"}  # fmt: skip
    return subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


@pytest.fixture
def evil_branch(tmp_path, settings):
    """A checkout following origin/main, and a branch anyone who can push could have pushed:
    its manage.py (what the migration plan runs) leaves a marker file."""
    origin, clone, marker = tmp_path / "origin.git", tmp_path / "clone", tmp_path / "ran"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    _git(tmp_path, "clone", "-q", str(origin), str(clone))
    (clone / "manage.py").write_text("print('the real manage.py')\n")
    _git(clone, "add", "manage.py")
    _git(clone, "commit", "-q", "-m", "Initial")
    _git(clone, "push", "-q", "-u", "origin", "main")
    _git(clone, "checkout", "-q", "-b", "evil")
    (clone / "manage.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    _git(clone, "commit", "-q", "-am", "Innocent-looking change")
    _git(clone, "push", "-q", "origin", "evil")
    _git(clone, "checkout", "-q", "main")
    _git(clone, "branch", "-q", "-D", "evil")  # only origin has it
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "REPO_DIR": str(clone), "BRANCH": "main"}
    return SimpleNamespace(origin=origin, clone=clone, marker=marker)


def test_the_confirmation_page_runs_no_code_of_the_ref(django_user_model, evil_branch):
    client = client_for(django_user_model, "trigger")
    page = client.get(url("deploy"), {"ref": "origin/evil"})
    text = page.content.decode()
    assert page.status_code == 200
    assert not evil_branch.marker.exists(), "a GET ran the branch's manage.py"
    # git facts only: the commit, the changed file, the steps and why
    assert "Innocent-looking change" in text and "manage.py" in text
    assert "Steps:" in text and "not computed on this page" in text
    assert _git(evil_branch.clone, "worktree", "list").count("\n") == 0  # no worktree added


def test_the_migration_plan_needs_a_csrf_protected_post(django_user_model, evil_branch):
    client = client_for(django_user_model, "trigger", enforce_csrf_checks=True)
    page = client.get(url("deploy"), {"ref": "origin/evil"}).content.decode()
    assert 'name="preview"' in page
    forged = client.post(url("deploy"), {"ref": "origin/evil", "preview": "1"})
    assert forged.status_code == 403 and not evil_branch.marker.exists()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    posted = client.post(
        url("deploy"), {"ref": "origin/evil", "preview": "1", "csrfmiddlewaretoken": token}
    )
    assert posted.status_code == 200 and 'id="zd-confirm"' in posted.content.decode()
    assert evil_branch.marker.exists()  # the plan ran the target's code, as confirmed
    assert not Deployment.objects.exists()  # a preview queues nothing


def test_the_page_does_not_fetch_while_a_deploy_runs(django_user_model, evil_branch, settings):
    from django_zerodeploy.conf import app_settings
    from django_zerodeploy.pipeline.lock import deploy_lock

    before = _git(evil_branch.clone, "for-each-ref", "refs/remotes/")
    other = evil_branch.clone.parent / "other"
    _git(evil_branch.clone.parent, "clone", "-q", str(evil_branch.origin), str(other))
    _git(other, "commit", "-q", "--allow-empty", "-m", "Newer")
    _git(other, "push", "-q", "origin", "main")
    lock = deploy_lock(app_settings.runtime_dir).acquire()
    try:
        text = client_for(django_user_model, "trigger").get(url("deploy")).content.decode()
    finally:
        lock.release()
    assert "A deploy is running now" in text
    assert _git(evil_branch.clone, "for-each-ref", "refs/remotes/") == before  # no fetch


def test_the_page_answers_when_the_remote_hangs(django_user_model, evil_branch, monkeypatch):
    """A remote that accepts and never answers: the page must answer well within Gunicorn's
    worker timeout (30 s by default), saying why the plan is incomplete."""
    from django_zerodeploy.admin import views
    from tests.health.test_healthz_gunicorn import SilentListener

    monkeypatch.setattr(views, "PREVIEW_GIT_TIMEOUT", 2.0)
    hung = SilentListener()
    try:
        _git(evil_branch.clone, "remote", "set-url", "origin", f"git://127.0.0.1:{hung.port}/x")
        started = time.monotonic()
        page = client_for(django_user_model, "trigger").get(url("deploy"))
        elapsed = time.monotonic() - started
    finally:
        hung.close()
    assert page.status_code == 200 and hung.accepted
    assert "timed out" in page.content.decode()
    assert elapsed < 20, f"the page took {elapsed:.1f} s"


def test_the_migration_plan_of_a_post_is_bounded_too(django_user_model, evil_branch, monkeypatch):
    """The confirmed preview runs the target's manage.py: one that hangs (a module that blocks
    on import) must not hold the page past Gunicorn's worker timeout, nor leave its worktree."""
    from django_zerodeploy.admin import views

    monkeypatch.setattr(views, "PREVIEW_GIT_TIMEOUT", 2.0)
    clone = evil_branch.clone
    _git(clone, "checkout", "-q", "-b", "slow")
    (clone / "manage.py").write_text("import time\ntime.sleep(120)\n")
    _git(clone, "commit", "-q", "-am", "Slow to import")
    _git(clone, "push", "-q", "origin", "slow")
    _git(clone, "checkout", "-q", "main")
    _git(clone, "branch", "-q", "-D", "slow")
    started = time.monotonic()
    page = client_for(django_user_model, "trigger").post(
        url("deploy"), {"ref": "origin/slow", "preview": "1"}
    )
    elapsed = time.monotonic() - started
    assert page.status_code == 200 and "timed out" in page.content.decode()
    assert elapsed < 20, f"the page took {elapsed:.1f} s"
    assert _git(clone, "worktree", "list").count("\n") == 0  # the plan's worktree removed
    assert not Deployment.objects.exists()


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
