"""Signed push webhooks: GitHub, GitLab and Gitea/Forgejo, replay protection, branch filter.

Real database, real django-q2 ORM broker (the enqueued task is read back from its queue table),
real git for the branch a checkout follows.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from django_q.models import OrmQ

from django_zerodeploy.models import Deployment, WebhookDelivery
from django_zerodeploy.webhooks import deploy_branch
from tests.support.webhooks import (
    HEAD,
    SECRET,
    github_push,
    gitlab_push,
    post_github,
    post_gitlab,
    queued_tasks,
    sign,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.ZERODEPLOY = {
        **settings.ZERODEPLOY,
        "WEBHOOK_SECRET": SECRET,
        "BRANCH": "main",
        "WEBHOOK_PROVIDERS": ["github", "gitlab", "gitea", "forgejo"],
    }
    return settings


@pytest.fixture
def url():
    return reverse("django_zerodeploy:webhook")


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)  # the webhook must not need a CSRF token


# -- on / off ----------------------------------------------------------------------------------
def test_off_without_secret_answers_404_to_everything(client, url, settings):
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "WEBHOOK_SECRET": None}
    body = json.dumps(github_push()).encode()
    assert post_github(client, url, None, body=body).status_code == 404
    assert client.get(url).status_code == 404
    assert client.put(url).status_code == 404
    assert not Deployment.objects.exists()


def test_only_post(client, url):
    assert client.get(url).status_code == 405


# -- GitHub ------------------------------------------------------------------------------------
def test_valid_github_push_queues_a_deploy_and_answers_202(client, url):
    response = post_github(client, url, github_push(), delivery="delivery-1")
    assert response.status_code == 202, response.content
    data = response.json()
    record = Deployment.objects.get(pk=data["deployment"])
    assert data["status"] == "queued"
    assert data["url"] == reverse("admin:django_zerodeploy_deployment_change", args=[record.pk])
    assert record.status == Deployment.Status.QUEUED
    assert record.trigger == Deployment.Trigger.WEBHOOK
    assert record.ref == "main"
    assert record.target_sha == HEAD
    assert record.subject == "Fix the thing"
    assert record.username == "github:octocat"
    assert record.user is None
    # deploys the head of the branch (a later push supersedes an earlier one)
    assert record.options == {"wait_lock": 300}
    # handed to django-q2: one task, on the default queue, carrying the record's id
    ((key, task),) = queued_tasks()
    assert key == "example"
    assert task["func"] == "django_zerodeploy.tasks.run_queued_deployment"
    assert task["args"] == (record.pk,)
    record.refresh_from_db()
    assert record.task_id == task["id"]
    assert (
        WebhookDelivery.objects.get(provider="github", delivery_id="delivery-1").deployment
        == record
    )


def test_github_form_encoded_payload(client, url):
    body = urlencode({"payload": json.dumps(github_push())}).encode()
    response = client.post(
        url,
        data=body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_GITHUB_EVENT="push",
        HTTP_X_GITHUB_DELIVERY="form-1",
        HTTP_X_HUB_SIGNATURE_256="sha256=" + sign(body),
    )
    assert response.status_code == 202, response.content


def test_invalid_signature_is_403(client, url):
    response = post_github(client, url, github_push(), secret="not-the-secret")
    assert response.status_code == 403
    assert "not signed" in response.json()["error"]
    assert not Deployment.objects.exists() and not WebhookDelivery.objects.exists()
    assert not OrmQ.objects.exists()


def test_signature_over_a_different_body_is_403(client, url):
    signed = json.dumps(github_push()).encode()
    tampered = json.dumps(github_push(after="c" * 40)).encode()
    response = post_github(client, url, None, body=tampered, signature="sha256=" + sign(signed))
    assert response.status_code == 403


def test_missing_signature_is_403(client, url):
    response = post_github(client, url, github_push(), signature=False)
    assert response.status_code == 403
    assert "X-Hub-Signature-256" in response.json()["error"]
    body = json.dumps(github_push()).encode()
    anonymous = client.post(url, data=body, content_type="application/json")
    assert anonymous.status_code == 403
    assert not Deployment.objects.exists()


def test_replayed_delivery_is_refused(client, url):
    first = post_github(client, url, github_push(), delivery="same-id")
    again = post_github(client, url, github_push(), delivery="same-id")
    assert first.status_code == 202
    assert again.status_code == 409
    assert "already received" in again.json()["error"]
    assert Deployment.objects.count() == 1
    assert OrmQ.objects.count() == 1


def test_push_to_another_branch_does_not_deploy(client, url):
    response = post_github(client, url, github_push(ref="refs/heads/feature"))
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert "refs/heads/main" in response.json()["reason"]
    assert not Deployment.objects.exists() and not OrmQ.objects.exists()


def test_tag_push_and_branch_deletion_do_not_deploy(client, url):
    assert post_github(client, url, github_push(ref="refs/tags/main")).json()["status"] == "ignored"
    deleted = post_github(client, url, github_push(after="0" * 40, deleted=True))
    assert deleted.status_code == 200 and deleted.json()["status"] == "ignored"
    assert not Deployment.objects.exists()


def test_oversized_body_is_413(client, url, settings):
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "WEBHOOK_MAX_BYTES": 2000}
    payload = github_push(padding="x" * 3000)
    response = post_github(client, url, payload)
    assert response.status_code == 413
    assert not Deployment.objects.exists()


def test_oversized_body_without_content_length_is_413(url, settings):
    """A client that lies about (or omits) the length is still cut at the limit."""
    from io import BytesIO

    from django.core.handlers.wsgi import WSGIRequest

    from django_zerodeploy.webhooks import WebhookError, read_body

    body = b"x" * 5000
    request = WSGIRequest(
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": url,
            "CONTENT_LENGTH": "100",
            "wsgi.input": BytesIO(body),
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
        }
    )
    assert read_body(request, 1000) == body[:100]  # Django never reads past the declared length
    request = WSGIRequest(
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": url,
            "CONTENT_LENGTH": "5000",
            "wsgi.input": BytesIO(body),
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
        }
    )
    with pytest.raises(WebhookError) as refused:
        read_body(request, 1000)
    assert refused.value.status == 413


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b"\xff\xfe",
        json.dumps({"after": HEAD}).encode(),
        json.dumps({"ref": 5, "after": HEAD}).encode(),
    ],
    ids=["bad-json", "not-an-object", "not-utf8", "no-ref", "ref-not-a-string"],
)
def test_malformed_payload_is_400(client, url, body):
    response = post_github(client, url, None, body=body)
    assert response.status_code == 400, response.content
    assert not Deployment.objects.exists()


def test_a_delivery_without_an_id_is_accepted_once(client, url):
    """The id is an unsigned header: replay protection rests on the signed body instead."""
    body = json.dumps(github_push()).encode()
    headers = {"HTTP_X_GITHUB_EVENT": "push", "HTTP_X_HUB_SIGNATURE_256": "sha256=" + sign(body)}
    first = client.post(url, data=body, content_type="application/json", **headers)
    again = client.post(url, data=body, content_type="application/json", **headers)
    assert (first.status_code, again.status_code) == (202, 409)
    assert WebhookDelivery.objects.get().delivery_id == ""


def test_one_body_deploys_once_whatever_delivery_id_it_carries(client, url):
    """A captured body (a proxy log, the forge's delivery log) sent again with fresh ids."""
    body = json.dumps(github_push()).encode()
    statuses = [
        post_github(client, url, None, body=body, delivery=str(uuid.uuid4())).status_code
        for _ in range(6)
    ]
    assert statuses == [202, 409, 409, 409, 409, 409]
    assert Deployment.objects.count() == 1 and OrmQ.objects.count() == 1


def test_only_the_configured_providers_are_accepted(client, url, settings):
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "WEBHOOK_PROVIDERS": ["github"]}
    # the raw secret as a GitLab token: not accepted by a GitHub-only site
    refused = post_gitlab(client, url, gitlab_push())
    assert refused.status_code == 403 and "gitlab" in refused.json()["error"]
    assert "WEBHOOK_PROVIDERS" in refused.json()["error"]
    assert not Deployment.objects.exists()
    assert post_github(client, url, github_push()).status_code == 202
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "WEBHOOK_PROVIDERS": []}
    none = post_github(client, url, github_push(after="c" * 40))
    assert none.status_code == 403 and "WEBHOOK_PROVIDERS" in none.json()["error"]
    assert Deployment.objects.count() == 1


def test_a_push_of_what_is_already_queued_is_ignored(client, url):
    assert post_github(client, url, github_push()).status_code == 202
    # another body (another 'before') pushing the same commit: one deploy is enough
    again = post_github(client, url, github_push(before="e" * 40))
    assert again.status_code == 200 and again.json()["status"] == "ignored"
    assert "already" in again.json()["reason"] and Deployment.objects.count() == 1


def test_a_push_of_a_release_deployed_before_is_ignored(client, url):
    """Rolled back since, a replayed push (its delivery row pruned) must not bring it back."""
    done = Deployment.objects.create(status=Deployment.Status.SUCCEEDED, target_sha=HEAD)
    response = post_github(client, url, github_push())
    assert response.status_code == 200 and f"deploy #{done.pk}" in response.json()["reason"]
    assert Deployment.objects.count() == 1


def test_a_push_of_what_serves_or_older_is_ignored(client, url, tmp_path, settings):
    repo = tmp_path / "repo"
    _git(tmp_path, "init", "-q", "-b", "main", str(repo))
    for message in ("one", "two"):
        _git(repo, "-c", "user.email=a@b.c", "-c", "user.name=A", "commit", "-q",
             "--allow-empty", "-m", message)  # fmt: skip
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD", "HEAD~1"],
                          capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "REPO_DIR": str(repo)}
    serving = post_github(client, url, github_push(after=head[0]))
    assert serving.status_code == 200 and "already serves" in serving.json()["reason"]
    older = post_github(client, url, github_push(after=head[1]))
    assert older.status_code == 200 and "older than" in older.json()["reason"]
    # a commit this checkout has not fetched yet is new: deployed
    assert post_github(client, url, github_push(after="f" * 40)).status_code == 202
    assert Deployment.objects.count() == 1


def test_old_delivery_rows_are_pruned(client, url):
    from datetime import timedelta

    from django.utils import timezone

    old = WebhookDelivery.objects.create(provider="github", delivery_id="old")
    WebhookDelivery.objects.filter(pk=old.pk).update(
        received_at=timezone.now() - timedelta(days=91)
    )
    assert post_github(client, url, github_push()).status_code == 202
    assert list(WebhookDelivery.objects.values_list("delivery_id", flat=True)) != ["old"]
    assert not WebhookDelivery.objects.filter(pk=old.pk).exists()


def test_ping_and_other_events_do_not_deploy(client, url):
    ping = post_github(client, url, {"zen": "Keep it logically awesome."}, event="ping")
    assert ping.status_code == 200 and ping.json()["status"] == "pong"
    issue = post_github(client, url, {"action": "opened"}, event="issues")
    assert issue.status_code == 200 and issue.json()["status"] == "ignored"
    assert not Deployment.objects.exists()


def test_routed_to_the_hosts_cluster(client, url, settings):
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "Q_CLUSTER_NAME": "deploy-web1"}
    assert post_github(client, url, github_push()).status_code == 202
    ((key, _task),) = queued_tasks()
    assert key == "deploy-web1"


# -- GitLab ------------------------------------------------------------------------------------
def test_gitlab_token(client, url):
    ok = post_gitlab(client, url, gitlab_push(), delivery="gl-1")
    assert ok.status_code == 202, ok.content
    record = Deployment.objects.get()
    assert record.username == "gitlab:jsmith"
    assert record.subject == "Newest commit"
    assert post_gitlab(client, url, gitlab_push(), token="wrong").status_code == 403
    assert post_gitlab(client, url, gitlab_push(), token=None).status_code == 403
    assert post_gitlab(client, url, gitlab_push(), delivery="gl-1").status_code == 409
    assert post_gitlab(client, url, gitlab_push(ref="refs/heads/dev")).json()["status"] == "ignored"
    assert Deployment.objects.count() == 1


def test_gitlab_deliveries_are_not_named_by_the_hook(client, url):
    """X-Gitlab-Webhook-UUID names the hook (the same on every delivery), not the delivery."""
    hook = str(uuid.uuid4())
    statuses = []
    for after in ("1" * 40, "2" * 40, "3" * 40):
        payload = {**gitlab_push(), "after": after, "checkout_sha": after}
        response = client.post(url, data=json.dumps(payload), content_type="application/json",
                               HTTP_X_GITLAB_EVENT="Push Hook", HTTP_X_GITLAB_TOKEN=SECRET,
                               HTTP_X_GITLAB_WEBHOOK_UUID=hook)  # fmt: skip
        statuses.append(response.status_code)
    assert statuses == [202, 202, 202]
    assert hook not in set(WebhookDelivery.objects.values_list("delivery_id", flat=True))


# -- Gitea and Forgejo -------------------------------------------------------------------------
@pytest.mark.parametrize("forge", ["Gitea", "Forgejo"])
def test_gitea_and_forgejo_signatures(client, url, forge):
    body = json.dumps(github_push()).encode()

    def post(signature, delivery):
        upper = forge.upper()
        return client.post(
            url,
            data=body,
            content_type="application/json",
            **{
                f"HTTP_X_{upper}_EVENT": "push",
                f"HTTP_X_{upper}_DELIVERY": delivery,
                f"HTTP_X_{upper}_SIGNATURE": signature,
            },
        )

    assert post(sign(body, "wrong"), "d-1").status_code == 403
    assert post("", "d-1").status_code == 403
    accepted = post(sign(body), "d-1")
    assert accepted.status_code == 202, accepted.content
    assert post(sign(body), "d-1").status_code == 409
    delivery = WebhookDelivery.objects.get()
    assert delivery.provider == forge.lower()


def test_one_body_is_not_taken_again_as_another_provider(client, url):
    """Forgejo signs one body for its own, Gitea's and GitHub's headers: the body received as
    forgejo, its deploy failed, must not deploy again re-sent with the gitea or github headers."""
    body = json.dumps(github_push()).encode()
    headers = {"HTTP_X_FORGEJO_EVENT": "push", "HTTP_X_FORGEJO_SIGNATURE": sign(body)}
    first = client.post(url, data=body, content_type="application/json", **headers)
    assert first.status_code == 202, first.content
    Deployment.objects.update(status=Deployment.Status.FAILED)
    as_gitea = {"HTTP_X_GITEA_EVENT": "push", "HTTP_X_GITEA_SIGNATURE": sign(body)}
    as_github = {"HTTP_X_GITHUB_EVENT": "push", "HTTP_X_HUB_SIGNATURE_256": "sha256=" + sign(body)}
    for other in (as_gitea, as_github):
        again = client.post(url, data=body, content_type="application/json", **other)
        assert again.status_code == 409, again.content
    assert Deployment.objects.count() == 1


def test_forgejo_sending_gitea_and_github_headers_too_is_read_as_forgejo(client, url):
    body = json.dumps(github_push()).encode()
    response = client.post(
        url,
        data=body,
        content_type="application/json",
        HTTP_X_FORGEJO_EVENT="push",
        HTTP_X_FORGEJO_DELIVERY="f-1",
        HTTP_X_FORGEJO_SIGNATURE=sign(body),
        HTTP_X_GITEA_EVENT="push",
        HTTP_X_GITEA_DELIVERY="f-1",
        HTTP_X_GITEA_SIGNATURE=sign(body),
        HTTP_X_GITHUB_EVENT="push",
        HTTP_X_GITHUB_DELIVERY="f-1",
        HTTP_X_HUB_SIGNATURE_256="sha256=" + sign(body),
    )
    assert response.status_code == 202
    assert WebhookDelivery.objects.get().provider == "forgejo"


# -- which branch ------------------------------------------------------------------------------
def _git(cwd, *args):
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def test_branch_defaults_to_the_checkouts_upstream(tmp_path, settings):
    origin, clone = tmp_path / "origin", tmp_path / "clone"
    _git(tmp_path, "init", "-q", "-b", "production", str(origin))
    _git(
        origin,
        "-c",
        "user.email=a@b.c",
        "-c",
        "user.name=A",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "one",
    )
    _git(tmp_path, "clone", "-q", str(origin), str(clone))
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "BRANCH": None, "REPO_DIR": str(clone)}
    assert deploy_branch() == "production"
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "BRANCH": "release"}
    assert deploy_branch() == "release"


def test_no_known_branch_is_a_clear_400(client, url, tmp_path, settings):
    _git(tmp_path, "init", "-q", "-b", "main", str(tmp_path / "alone"))
    settings.ZERODEPLOY = {
        **settings.ZERODEPLOY,
        "BRANCH": None,
        "REPO_DIR": str(tmp_path / "alone"),
    }
    response = post_github(client, url, github_push())
    assert response.status_code == 400
    assert "BRANCH" in response.json()["error"]


def test_the_models_and_their_migrations_agree():
    from django.core.management import call_command

    call_command("makemigrations", "django_zerodeploy", "--check", "--dry-run", verbosity=0)


# -- webhook input ------------------------------------------------------------------------------
WEBHOOK_SECRET = "hardening-webhook-secret"


def _post_push(payload: dict) -> object:
    body = json.dumps(payload).encode()
    signature = sign(body, WEBHOOK_SECRET)
    return Client().post(
        reverse("django_zerodeploy:webhook"),
        data=body,
        content_type="application/json",
        HTTP_X_GITHUB_EVENT="push",
        HTTP_X_GITHUB_DELIVERY=str(uuid.uuid4()),
        HTTP_X_HUB_SIGNATURE_256=f"sha256={signature}",
    )


@pytest.fixture
def webhook_on(settings):
    settings.ZERODEPLOY = {
        **settings.ZERODEPLOY,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_PROVIDERS": ["github"],
        "BRANCH": "main",
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("after", ["--output=/tmp/x", "HEAD", "abc123", "g" * 40, ""])
def test_webhook_refuses_an_after_that_is_not_a_commit_id(webhook_on, after):
    response = _post_push({"ref": "refs/heads/main", "after": after, "pusher": {"name": "o"}})
    assert response.status_code == 400, response.content
    assert "40-hex" in response.json()["error"]
    assert not Deployment.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_webhook_cuts_a_long_pusher_name_to_the_column(webhook_on):
    response = _post_push(
        {"ref": "refs/heads/main", "after": "B" * 40, "pusher": {"name": "x" * 400}}
    )
    assert response.status_code == 202, response.content
    record = Deployment.objects.get()
    max_length = Deployment._meta.get_field("username").max_length
    assert record.username == ("github:" + "x" * 400)[:max_length]
    assert record.target_sha == "b" * 40


@pytest.mark.django_db(transaction=True)
def test_webhook_still_ignores_a_deleted_branch(webhook_on):
    response = _post_push({"ref": "refs/heads/main", "after": "0" * 40, "deleted": True})
    assert response.status_code == 200 and response.json()["status"] == "ignored"
