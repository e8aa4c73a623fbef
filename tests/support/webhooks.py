"""Forge deliveries for the webhook tests: push payloads of GitHub and GitLab, signed (or
carrying the token) the way each forge sends them, and the tasks they left on the queue."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

from django_q.models import OrmQ
from django_q.signing import SignedPackage

SECRET = "webhook-secret-for-tests"
HEAD = "a" * 40


def github_push(ref="refs/heads/main", after=HEAD, **extra):
    return {
        "ref": ref,
        "before": "b" * 40,
        "after": after,
        "deleted": False,
        "head_commit": {"id": after, "message": "Fix the thing\n\nLonger body"},
        "pusher": {"name": "octocat"},
        **extra,
    }


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_github(
    client, url, payload, *, event="push", delivery=None, secret=SECRET, signature=None, body=None
):
    body = body if body is not None else json.dumps(payload).encode()
    headers = {
        "HTTP_X_GITHUB_EVENT": event,
        "HTTP_X_GITHUB_DELIVERY": delivery or str(uuid.uuid4()),
    }
    if signature is not False:
        headers["HTTP_X_HUB_SIGNATURE_256"] = signature or "sha256=" + sign(body, secret)
    return client.post(url, data=body, content_type="application/json", **headers)


def queued_tasks():
    return [(row.key, SignedPackage.loads(row.payload)) for row in OrmQ.objects.all()]


def gitlab_push(ref="refs/heads/main"):
    return {
        "object_kind": "push",
        "ref": ref,
        "before": "b" * 40,
        "after": HEAD,
        "checkout_sha": HEAD,
        "user_username": "jsmith",
        "commits": [{"id": "d" * 40, "title": "Older"}, {"id": HEAD, "title": "Newest commit"}],
    }


def post_gitlab(client, url, payload, token=SECRET, delivery=None):
    headers = {
        "HTTP_X_GITLAB_EVENT": "Push Hook",
        "HTTP_X_GITLAB_EVENT_UUID": delivery or str(uuid.uuid4()),
    }
    if token is not None:
        headers["HTTP_X_GITLAB_TOKEN"] = token
    return client.post(url, data=json.dumps(payload), content_type="application/json", **headers)
