"""A signed GitHub push to the example site served by Gunicorn queues a deploy that a real
qcluster runs under load; the branch comes from the server checkout's own upstream."""

from __future__ import annotations

import http.client
import json
import time
import uuid

import pytest

from tests.support.gunicorn import wait_for
from tests.support.qcluster import db_rows
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration

SECRET = "a-long-random-webhook-secret"
PATH = "/zerodeploy/webhook/"


def push(
    port: int, sha: str, ref: str = "refs/heads/main", delivery: str | None = None
) -> tuple[int, dict, float]:
    body = json.dumps(
        {
            "ref": ref,
            "after": sha,
            "deleted": False,
            "head_commit": {"id": sha, "message": "Release v2"},
            "pusher": {"name": "octocat"},
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + sign(body, SECRET),
        "Connection": "close",
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.monotonic()
    conn.request("POST", PATH, body=body, headers=headers)
    response = conn.getresponse()
    data = json.loads(response.read() or b"{}")
    elapsed = time.monotonic() - started
    conn.close()
    return response.status, data, elapsed


def test_signed_push_deploys_through_the_cluster_under_load(
    site, gunicorn_factory, load_factory, qcluster_factory
):
    site.extra_env["ZERODEPLOY_WEBHOOK_SECRET"] = SECRET
    v2 = site.commit_release("v2")
    server = gunicorn_factory(workers=2)
    cluster = qcluster_factory(site)

    other_status, other, _ = push(server.port, v2, ref="refs/heads/feature")
    assert other_status == 200 and other["status"] == "ignored", other

    load = load_factory(port=server.port, clients=3, max_seconds=240, timeout=30).start()
    try:
        with load.operation():
            status, data, elapsed = push(server.port, v2, delivery="push-1")
            assert status == 202, data
            deployment_id = data["deployment"]
            replay_status, replay, _ = push(server.port, v2, delivery="push-1")
            assert replay_status == 409, replay

            def finished():
                rows = db_rows(
                    site,
                    "SELECT status FROM django_zerodeploy_deployment WHERE id = ?",
                    deployment_id,
                )
                return rows and rows[0][0] not in ("queued", "running") and rows[0][0]

            final = wait_for(finished, timeout=420, interval=0.3)
    finally:
        report = load.stop()
    report.assert_covered()
    print(f"webhook accepted in {elapsed * 1000:.1f} ms under load")  # recorded in docs/admin.md
    assert final == "succeeded", cluster.log_text()
    trigger, username, target = db_rows(
        site,
        "SELECT trigger, username, target_sha FROM django_zerodeploy_deployment WHERE id = ?",
        deployment_id,
    )[0]
    assert (trigger, username, target) == ("webhook", "github:octocat", v2)
    assert db_rows(site, "SELECT count(*) FROM django_zerodeploy_deployment")[0][0] == 1
    assert report.failed == 0, report.summary()
    assert server.served_releases() == {"v2"}
