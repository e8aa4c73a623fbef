"""A real ``qcluster`` (ORM broker, the site's own file database) runs a deploy started from the
admin of the example site, served by a real Gunicorn under load.

The admin is driven over HTTP like a browser would (login, CSRF token, the confirmation page),
then the detail page's JSON is polled until the deploy finishes (helpers in
``tests/support/qcluster.py``).
"""

from __future__ import annotations

import time

import pytest

from tests.support.gunicorn import wait_for
from tests.support.qcluster import (
    ADMIN_USER,
    AdminSession,
    cluster_banner,
    create_superuser,
    db_rows,
    details,
    wait_finished,
)

pytestmark = pytest.mark.integration


def test_admin_deploy_runs_in_a_real_qcluster_under_load(
    site, gunicorn_factory, load_factory, qcluster_factory
):
    v2 = site.commit_release("v2", message="Release v2 from the admin")
    server = gunicorn_factory(workers=2)
    assert server.served_release() == "v1"
    create_superuser(site)
    admin = AdminSession(server.port)
    admin.login()
    # no cluster yet: the admin says so, and a deploy would stay queued
    assert cluster_banner(admin) == "down"

    cluster = qcluster_factory(site)
    assert wait_for(lambda: cluster_banner(admin) == "running", timeout=60), cluster.log_text()

    load = load_factory(port=server.port, clients=3, max_seconds=240, timeout=30).start()
    try:
        with load.operation():
            deployment_id, plan_page = admin.start_deploy()
            # the confirmation page showed the dry-run plan of this very release
            assert "Dry run: nothing was changed." in plan_page
            assert v2[:10] in plan_page and "Release v2 from the admin" in plan_page
            queued = db_rows(
                site,
                "SELECT status, trigger, username, task_id FROM django_zerodeploy_deployment WHERE id = ?",
                deployment_id,
            )[0]
            assert queued[1:3] == ("admin", ADMIN_USER) and queued[3]
            result = wait_finished(admin, deployment_id)
    finally:
        report = load.stop()
    report.assert_covered()

    assert result["status"] == "succeeded", details(site, cluster, deployment_id)
    assert result["target_sha"] == v2 and result["subject"] == "Release v2 from the admin"
    assert "queued" in result["seen"][:1] or "running" in result["seen"][:1]
    assert [
        s["status"] for s in result["steps"] if s["name"] in ("checkout", "reload", "verify")
    ] == ["ok"] * 3
    assert report.failed == 0, report.summary()
    assert report.markers["v1"] > 0 and report.last_marker == "v2", report.summary()
    assert server.served_releases() == {"v2"}
    assert server.healthz()["releaseId"] == v2
    assert site.server_head() == v2 and site.server_branch() == "main"
    # exactly one run: one record, the task acknowledged (off the queue) and its result saved
    assert db_rows(site, "SELECT count(*) FROM django_zerodeploy_deployment")[0][0] == 1
    assert db_rows(site, "SELECT count(*) FROM django_q_ormq")[0][0] == 0
    assert (
        db_rows(
            site,
            "SELECT count(*) FROM django_q_task WHERE success = 1 AND name = ?",
            f"deploy-{deployment_id}",
        )[0][0]
        == 1
    )
    # the cluster stops cleanly; then the admin says no cluster runs
    assert cluster.stop() == 0
    assert wait_for(lambda: cluster_banner(admin) == "down", timeout=30)


def test_cluster_stopped_during_a_deploy_finishes_it_first(
    site, gunicorn_factory, load_factory, qcluster_factory
):
    """What ``systemctl restart --no-block`` with ``KillMode=mixed`` does to the cluster that
    runs the deploy: SIGTERM to its main process only. django-q2 then stops gracefully: the
    worker finishes the running task (the whole deploy, recorded) before the cluster exits."""
    v2 = site.commit_release("v2")
    server = gunicorn_factory(workers=2)
    create_superuser(site)
    admin = AdminSession(server.port)
    admin.login()
    cluster = qcluster_factory(site)
    assert wait_for(lambda: cluster_banner(admin) == "running", timeout=60), cluster.log_text()

    load = load_factory(port=server.port, clients=2, max_seconds=240, timeout=30).start()
    try:
        with load.operation():
            deployment_id, _ = admin.start_deploy()
            assert wait_for(
                lambda: admin.progress(deployment_id)["status"] == "running",
                timeout=120,
                interval=0.05,
            )
            cluster.terminate()
            assert not admin.progress(deployment_id)["finished"]  # the stop was asked mid-deploy
            exit_code = cluster.proc.wait(timeout=420)
            result = admin.progress(deployment_id)
    finally:
        report = load.stop()
    report.assert_covered()

    assert exit_code == 0, cluster.log_text()
    assert result["status"] == "succeeded", details(site, cluster, deployment_id)
    assert result["target_sha"] == v2
    assert report.failed == 0, report.summary()
    assert server.served_releases() == {"v2"}
    # the worker's result reached the database before the cluster exited; nothing is left queued
    assert (
        db_rows(
            site,
            "SELECT count(*) FROM django_q_task WHERE success = 1 AND name = ?",
            f"deploy-{deployment_id}",
        )[0][0]
        == 1
    )
    assert db_rows(site, "SELECT count(*) FROM django_q_ormq")[0][0] == 0


def test_a_deploy_queued_without_a_cluster_waits_and_runs_when_one_starts(
    site, gunicorn_factory, load_factory, qcluster_factory
):
    """Never silently lost: the record stays queued (the page says why) until a cluster runs."""
    v2 = site.commit_release("v2")
    server = gunicorn_factory(workers=2)
    create_superuser(site)
    admin = AdminSession(server.port)
    admin.login()
    deployment_id, _ = admin.start_deploy()
    _, _, detail = admin.request(f"/admin/django_zerodeploy/deployment/{deployment_id}/change/")
    assert 'data-zd-cluster="down"' in detail and "stay queued" in detail
    time.sleep(2)  # a while with no cluster: nothing may pick the deploy up
    assert admin.progress(deployment_id)["status"] == "queued"
    load = load_factory(port=server.port, clients=2, max_seconds=240, timeout=30).start()
    try:
        with load.operation():
            cluster = qcluster_factory(site)
            result = wait_finished(admin, deployment_id)
    finally:
        report = load.stop()
    report.assert_covered()
    assert result["status"] == "succeeded", details(site, cluster, deployment_id)
    assert result["target_sha"] == v2 and server.served_releases() == {"v2"}
    assert report.failed == 0, report.summary()
