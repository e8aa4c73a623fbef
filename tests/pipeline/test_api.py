"""The public API the admin and the webhook call (``run_deploy``, ``build_plan``), in-process,
against a real git site. Gunicorn is not started: these deploy with ``no_reload``; the reload
path is covered by the command-line tests under load."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import override_settings

from django_zerodeploy import exit_codes
from django_zerodeploy.models import Deployment
from django_zerodeploy.pipeline import DeployOptions, build_plan, run_deploy
from django_zerodeploy.signals import deploy_finished, deploy_started
from tests.support.site import git

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def live(site, monkeypatch):
    """This process deploys ``site.server``: its subprocesses get the site's environment
    (settings module, database); the records go to the test database."""
    for name, value in site.env().items():
        if name in (
            "DJANGO_SETTINGS_MODULE",
            "EXAMPLE_DB_PATH",
            "EXAMPLE_STATIC_ROOT",
            "ZERODEPLOY_RUNTIME_DIR",
            "PATH",
        ):
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    zerodeploy = {
        "REPO_DIR": str(site.server),
        "RUNTIME_DIR": str(site.runtime),
        "SMOKE_URLS": ["/"],
        "NOTIFY_ADMINS": True,
        "MIN_FREE_DISK_MB": 1,
    }
    with override_settings(
        ZERODEPLOY=zerodeploy,
        STATIC_ROOT=str(site.static_root),
        ADMINS=[("Ops", "ops@example.com")],
    ):
        yield site


class Signals:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str | None]] = []

    def started(self, sender, deployment, **kwargs) -> None:
        self.seen.append(("started", deployment.pk, deployment.status))

    def finished(self, sender, deployment, status, **kwargs) -> None:
        self.seen.append(("finished", deployment.pk, status))


@pytest.fixture
def signals():
    catcher = Signals()
    deploy_started.connect(catcher.started)
    deploy_finished.connect(catcher.finished)
    yield catcher
    deploy_started.disconnect(catcher.started)
    deploy_finished.disconnect(catcher.finished)


def test_run_deploy_returns_a_result_records_and_signals(live, signals):
    v2 = live.commit_release("v2")
    lines: list[str] = []
    result = run_deploy(DeployOptions(no_reload=True, username="alice"), echo=lines.append)
    assert result.exit_code == 0, "\n".join(lines)
    assert result.status == "succeeded" and result.target_sha == v2
    assert live.server_head() == v2 and live.server_branch() == "main"
    record = Deployment.objects.get(pk=result.deployment_id)
    assert record.status == "succeeded" and record.username == "alice" and record.trigger == "cli"
    assert [s.name for s in record.steps.all()][:3] == ["lock", "environment", "fetch"]
    assert signals.seen == [("started", record.pk, "running"), ("finished", record.pk, "succeeded")]
    assert any(line.lstrip().startswith("preflight") for line in lines)
    assert mail.outbox == []  # no mail on success

    again = run_deploy(DeployOptions(no_reload=True), echo=lines.append)
    assert (again.exit_code, again.status) == (0, "nothing")


def test_queued_record_is_run_into_and_a_failure_mails_admins(live, signals):
    queued = Deployment.objects.create(status="queued", trigger="webhook", username="github")
    views = live.server / "notes" / "views.py"
    views.write_text(views.read_text() + "# edited on the server\n")
    result = run_deploy(
        DeployOptions(no_reload=True, trigger="webhook"), deployment=queued, echo=lambda line: None
    )
    assert result.exit_code == 2 and result.deployment_id == queued.pk
    queued.refresh_from_db()
    assert queued.status == "failed" and "notes/views.py" in queued.message
    assert queued.finished_at is not None and queued.trigger == "webhook"
    assert [(s.name, s.status) for s in queued.steps.all()] == [
        ("lock", "ok"),
        ("environment", "failed"),
    ]
    assert signals.seen == [("finished", queued.pk, "failed")]
    assert len(mail.outbox) == 1 and "failed" in mail.outbox[0].subject


def test_failed_preflight_is_recorded_and_leaves_the_live_tree(live):
    v1 = live.server_head()
    broken = live.commit_release(
        "v2", {"exampleproject/urls.py": "raise ImportError('urls are broken')\n"}
    )
    result = run_deploy(DeployOptions(no_reload=True), echo=lambda line: None)
    assert result.exit_code == 1 and result.status == "failed"
    assert result.target_sha == broken and live.server_head() == v1
    assert "urls are broken" in result.message
    assert git(live.server, "status", "--porcelain", "--untracked-files=all") == ""


def test_build_plan_is_what_the_admin_shows(live):
    v2 = live.commit_release("v2", {"notes/static/notes/site.css": "body {}\n"})
    plan = build_plan(DeployOptions(no_reload=True))
    assert plan.target_sha == v2 and not plan.nothing_to_deploy
    decided = {s.name: s.run for s in plan.steps}
    assert (
        decided["collectstatic"] is True
        and decided["install"] is False
        and decided["reload"] is False
    )
    assert plan.as_dict()["changed_files"] == ["notes/release.py", "notes/static/notes/site.css"]
    assert "Dry run: nothing was changed." in plan.as_text()
    assert live.server_head() != v2 and Deployment.objects.count() == 0


@pytest.mark.django_db
def test_a_queued_deploy_that_cannot_start_does_not_stay_running(settings, tmp_path):
    from django_zerodeploy.tasks import run_queued_deployment

    (tmp_path / "a-file").write_text("")  # a runtime directory that cannot exist
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, "RUNTIME_DIR": str(tmp_path / "a-file" / "run")}
    record = Deployment.objects.create(status=Deployment.Status.QUEUED, trigger="admin")
    result = run_queued_deployment(record.pk)
    record.refresh_from_db()
    assert result["exit_code"] == exit_codes.USAGE and result["deployment_id"] == record.pk
    assert record.status == Deployment.Status.FAILED and record.finished_at is not None
