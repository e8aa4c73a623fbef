"""The release directory and venv key on the Deployment row: written as the releases pipeline
learns them (also for ``--rollback``), blank in place, printed by ``deploy --history``, and a
migration that an older release keeps writing through."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from django_zerodeploy.migration_safety.plan import classify_pending
from django_zerodeploy.models import Deployment
from django_zerodeploy.pipeline import DeployOptions, deploy_history
from django_zerodeploy.pipeline.context import DeployContext, Outcome, StepFailed
from django_zerodeploy.pipeline.runner import Runner
from django_zerodeploy.pipeline.steps.base import Step
from django_zerodeploy.pipeline.steps.releases_rollback import RollbackTargetStep
from django_zerodeploy.pipeline.steps.source import OpenRecordStep
from django_zerodeploy.releases import switch
from django_zerodeploy.releases.layout import VENV_LINK, ReleasesRoot

SHA_A, SHA_B = "a" * 40, "b" * 40
KEY_A, KEY_B = "cpython-3.11.7-0123456789abcdef", "cpython-3.11.7-fedcba9876543210"


def make_release(root: ReleasesRoot, sha: str, minute: int, key: str):
    release = root.release(root.new_release_name(sha, datetime(2026, 12, 3, 7, minute, tzinfo=UTC)))
    release.path.mkdir(parents=True)
    (release.path / "manage.py").write_text("")
    (root.venvs_dir / key / "bin").mkdir(parents=True, exist_ok=True)
    os.symlink(root.venvs_dir / key, release.path / VENV_LINK)
    root.write_metadata(release.name, sha=sha, complete=True)
    return release


# Steps standing in for fetch, build and venv: the real ones clone and build virtualenvs, which
# tests/releases/test_deploy.py runs end to end; here only what they leave on the context counts.
class _Fetched(Step):
    name = "fetch"
    decides_target = True

    def run(self, ctx: DeployContext) -> Outcome:
        ctx.target_sha, ctx.previous_sha = SHA_B, SHA_A
        return Outcome("fetched")


class _Built(Step):
    name = "build"

    def run(self, ctx: DeployContext) -> Outcome:
        ctx.release = ReleasesRoot(Path("/srv/site")).release("20261203072800-bbbbbbbbbbbb")
        return Outcome(ctx.release.name)


class _VenvFails(Step):
    name = "venv"
    seen: tuple[str, str] | None = None  # the row as this step started

    def run(self, ctx: DeployContext) -> Outcome:
        ctx.venv_key = KEY_B
        row = Deployment.objects.get(pk=ctx.deployment.pk)
        self.seen = (row.release_dir, row.venv_key)
        raise StepFailed("pip exited 1")


@pytest.mark.django_db
def test_a_failed_release_build_names_its_release_and_the_venv_that_did_not_build(runtime):
    with override_settings(ZERODEPLOY={"RUNTIME_DIR": str(runtime)}):
        venv = _VenvFails()
        result = Runner(
            DeployOptions(),
            None,
            lambda line: None,
            steps=[_Fetched(), OpenRecordStep(), _Built(), venv],
        ).run()
    assert result.status == "failed" and result.message == "pip exited 1"
    assert venv.seen == ("20261203072800-bbbbbbbbbbbb", "")  # written as the deploy goes
    row = Deployment.objects.get(pk=result.deployment_id)
    assert (row.release_dir, row.venv_key) == ("20261203072800-bbbbbbbbbbbb", KEY_B)


@pytest.mark.django_db
def test_an_in_place_deploy_leaves_both_blank(runtime):
    with override_settings(ZERODEPLOY={"RUNTIME_DIR": str(runtime)}):
        result = Runner(
            DeployOptions(), None, lambda line: None, steps=[_Fetched(), OpenRecordStep()]
        ).run()
    assert result.status == "succeeded"
    row = Deployment.objects.get(pk=result.deployment_id)
    assert (row.release_dir, row.venv_key) == ("", "")
    assert {"release_dir": "", "venv_key": ""}.items() <= deploy_history.deployment_dict(
        row
    ).items()


@pytest.mark.django_db
def test_a_rollback_records_the_release_it_switches_to_and_its_kept_venv(runtime, tmp_path):
    """The real target step on a real releases root (directories, links, metadata)."""
    root = ReleasesRoot(tmp_path / "srv")
    older, newer = make_release(root, SHA_A, 15, KEY_A), make_release(root, SHA_B, 28, KEY_B)
    switch.switch(root, older)
    switch.switch(root, newer)  # older is ROOT/previous now
    config = {"RUNTIME_DIR": str(runtime), "REPO_DIR": str(newer.path)}
    with override_settings(ZERODEPLOY=config):
        options = DeployOptions(rollback=True)
        result = Runner(
            options, None, lambda line: None, steps=[RollbackTargetStep(), OpenRecordStep()]
        ).run()
    assert result.status == "succeeded", result.message
    row = Deployment.objects.get(pk=result.deployment_id)
    assert (row.release_dir, row.venv_key, row.target_sha) == (older.name, KEY_A, SHA_A)
    assert row.message.startswith(f"Rolled back to {SHA_A[:10]} "), row.message


# -- deploy --history ----------------------------------------------------------------------------
def history_row(pk: int, release_dir: str = "", venv_key: str = "") -> dict:
    return {
        "id": pk,
        "status": "succeeded",
        "started_at": "2026-12-03T07:28:00+00:00",
        "created_at": None,
        "duration": 9.8,
        "previous_sha": SHA_A,
        "target_sha": SHA_B,
        "trigger": "cli",
        "message": "Deployed bbbbbbbbbb (v2) in 9.8 s.",
        "release_dir": release_dir,
        "venv_key": venv_key,
    }


def test_history_table_has_release_columns_once_a_deploy_ran_in_the_releases_layout():
    in_place = deploy_history.history_table([history_row(1)])
    assert "release" not in in_place and "venv" not in in_place.splitlines()[0]
    lines = deploy_history.history_table(
        [history_row(2, "20261203072800-bbbbbbbbbbbb", KEY_B), history_row(1)]
    ).splitlines()
    assert lines[0].split()[7:10] == ["release", "venv", "trigger"]
    assert lines[1].split()[8:11] == ["20261203072800-bbbbbbbbbbbb", KEY_B, "cli"]
    assert lines[2].split()[8:11] == ["-", "-", "cli"]
    # one column each: the trigger starts at the same place on every line
    assert len({line.index("cli") for line in lines[1:]}) == 1
    assert lines[0].index("trigger") == lines[1].index("cli")


@pytest.mark.django_db
def test_deploy_history_prints_them_and_json_has_them():
    Deployment.objects.create(status="succeeded", target_sha=SHA_A)
    Deployment.objects.create(
        status="succeeded",
        target_sha=SHA_B,
        release_dir="20261203072800-bbbbbbbbbbbb",
        venv_key=KEY_B,
    )
    out = StringIO()
    call_command("deploy", "--history", stdout=out)
    assert f"20261203072800-bbbbbbbbbbbb {KEY_B}" in out.getvalue()
    out = StringIO()
    call_command("deploy", "--history", "--json", stdout=out)
    rows = json.loads(out.getvalue())
    assert [(r["release_dir"], r["venv_key"]) for r in rows] == [
        ("20261203072800-bbbbbbbbbbbb", KEY_B),
        ("", ""),
    ]


# -- the migration -------------------------------------------------------------------------------
MIGRATION = "0005_release_dir_venv_key"


@pytest.mark.django_db(transaction=True)
def test_the_migration_is_safe_while_the_old_release_writes_and_reversible():
    """Classified safe by the app's own rules; an INSERT of a release that does not know the
    columns still works afterwards; and it migrates back and forth."""
    call_command("migrate", "django_zerodeploy", "0004", verbosity=0)
    try:
        plan = classify_pending()
        ours = [m for m in plan.pending if (m.app, m.name) == ("django_zerodeploy", MIGRATION)]
        assert ours and {op.classification for op in ours[0].operations} == {"safe"}
    finally:
        call_command("migrate", "django_zerodeploy", verbosity=0)
    with connection.cursor() as cursor:  # what the previous release's ORM sends
        cursor.execute(
            "INSERT INTO django_zerodeploy_deployment (status, trigger, username, host, ref, "
            "previous_sha, target_sha, subject, commits, options, message, applied_migrations, "
            "unsafe_migrations_acknowledged, created_at, task_id) VALUES ('succeeded', 'cli', "
            "'', '', '', '', %s, '', '[]', '{}', '', '[]', 0, '2026-12-03 07:00:00', '')",
            [SHA_A],
        )
    old = Deployment.objects.get(target_sha=SHA_A)
    assert (old.release_dir, old.venv_key) == (None, None)
    assert (
        deploy_history.history(5)[0] | {"release_dir": "", "venv_key": ""}
        == deploy_history.history(5)[0]
    )
