"""The console's views (``admin.views``): CSRF, the confirmation page, the queued record handed
to django-q2, rollback and cancel, the progress JSON, and a confirmation page that runs no code
of any release."""

from __future__ import annotations

import os
import re
import subprocess
import time
from types import SimpleNamespace

import pytest
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from django_zerodeploy.models import Deployment, DeploymentStep
from django_zerodeploy.tasks import run_queued_deployment
from tests.support.admin import (
    client_for,
    isolated,  # noqa: F401  (an autouse fixture)
    succeeded,
    url,
)

pytestmark = pytest.mark.django_db(transaction=True)


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
