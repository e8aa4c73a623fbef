"""The pipeline's parts, in-process: step order and EXTRA_STEPS, parsing, option validation,
records (bad releases, --rollback targets, history, redaction, interrupted deploys)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import override_settings
from django.utils import timezone

from django_zerodeploy import exit_codes
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.git import Git
from django_zerodeploy.models import Deployment, DeploymentStep
from django_zerodeploy.pipeline import (
    DeployOptions,
    DeployResult,
    deploy_history,
    interrupted,
    records,
    release_targets,
)
from django_zerodeploy.pipeline import history as public_history
from django_zerodeploy.pipeline.migrations import applied_from_output
from django_zerodeploy.pipeline.options import validate_options
from django_zerodeploy.pipeline.project import OWNER_ENV, Project
from django_zerodeploy.pipeline.records import Recorder, StepResult
from django_zerodeploy.pipeline.runner import format_line
from django_zerodeploy.pipeline.steps import STEP_NAMES, default_steps
from django_zerodeploy.pipeline.steps.base import innocent_step_names
from django_zerodeploy.pipeline.steps.extra import ExtraStep
from django_zerodeploy.pipeline.steps.release import requirement_files


def test_steps_read_top_to_bottom_in_the_documented_order():
    names = tuple(s.name for s in default_steps(extra=[]) if s.recorded)
    # the lock comes first, so that a second deploy is told "locked" (exit 4), never confused
    # by the first one's checkout or its two Gunicorn masters during the reload
    assert names == STEP_NAMES
    assert set(names) == set(STEP_NAMES)


def test_extra_steps_go_after_their_anchor_in_settings_order():
    extra = [
        {
            "name": "compilemessages",
            "after": "install",
            "command": ["python", "manage.py", "compilemessages"],
        },
        {"name": "npm", "after": "migrate", "command": ["npm", "run", "build"]},
        {"name": "second", "after": "install", "command": ["true"]},
    ]
    names = [s.name for s in default_steps(extra=extra)]
    assert names[names.index("install") + 1 : names.index("install") + 3] == [
        "compilemessages",
        "second",
    ]
    assert names[names.index("migrate") + 1] == "npm"
    assert names.index("npm") < names.index("smoke")
    # static files are collected before the preflight renders {% static %}
    assert names.index("install") < names.index("collectstatic") < names.index("preflight")
    assert isinstance(default_steps(extra=extra)[names.index("npm")], ExtraStep)


def test_requirement_files_follow_includes(tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements.txt").write_text("-r requirements/base.txt\nDjango>=4.2\n")
    (tmp_path / "requirements" / "base.txt").write_text("-c constraints.txt\npsutil\n")
    (tmp_path / "requirements" / "constraints.txt").write_text("psutil<99\n")
    assert requirement_files(tmp_path) == [
        "requirements.txt",
        "requirements/base.txt",
        "requirements/constraints.txt",
    ]


def test_applied_migrations_are_read_from_either_command():
    django_output = (
        "Operations to perform:\n  Apply all migrations: notes\nRunning migrations:\n"
        "  Applying notes.0002_tag... OK\n  Applying notes.0003_boom...Traceback (most recent call last):\n"
    )
    assert applied_from_output(django_output) == ["notes.0002_tag"]
    assert applied_from_output("applied notes.0002_tag\napplied shop.0007_price\n") == [
        "notes.0002_tag",
        "shop.0007_price",
    ]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"ref": "--upload-pack=touch x"}, "not a valid git ref"),
        ({"ref": "-x"}, "not a valid git ref"),
        ({"rollback": "--output=x"}, "not a valid git ref"),
        ({"ref": "main", "rollback": True}, "--ref and --rollback cannot be used together."),
        ({"wait_lock": -1}, "--wait-lock must not be negative."),
    ],
)
def test_bad_options_are_usage_errors_when_made(fields, says):
    """Checked once, on creation: no entry (command, admin, task, test) can pass bad options
    to the pipeline, so the pipeline does not check them again."""
    with pytest.raises(CommandFailure) as refused:
        DeployOptions(**fields)
    assert refused.value.exit_code == exit_codes.USAGE and says in refused.value.message
    with pytest.raises(CommandFailure):  # a copy with other fields is checked too
        dataclasses.replace(DeployOptions(), **fields)


def test_good_options_pass():
    DeployOptions(ref="v1.2.3")
    DeployOptions(rollback="12")
    options = DeployOptions(rollback=True, wait_lock=5)
    validate_options(options)
    with pytest.raises(dataclasses.FrozenInstanceError):  # checked options stay checked
        options.wait_lock = -1  # type: ignore[misc]


def test_result_as_dict_is_json_ready():
    result = DeployResult(
        0, "succeeded", "Deployed", 3, "a" * 40, "b" * 40, mixed_window=1.23456, duration=2.5
    )
    data = result.as_dict()
    assert data["exit_code"] == 0 and data["deployment_id"] == 3 and data["mixed_window"] == 1.235
    assert set(data) >= {
        "exit_code",
        "status",
        "message",
        "deployment_id",
        "target_sha",
        "previous_sha",
    }


def test_step_line_has_name_status_and_time():
    line = format_line(StepResult("preflight", "ok", "check, WSGI import", 1.234))
    assert line.split()[:4] == ["preflight", "ok", "1.23", "s"]


def test_failed_step_line_leaves_the_message_to_the_closing_line():
    """The refusal is printed once: by the deploy's closing message, not also by its step."""
    line = format_line(StepResult("environment", "failed", "Tracked files are modified", 0.04))
    assert line.split() == ["environment", "failed", "0.04", "s"]


def test_subprocess_environment_points_into_the_tree(tmp_path, monkeypatch):
    repo = tmp_path / "live"
    (repo / "src").mkdir(parents=True)
    worktree = tmp_path / "wt"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(repo / "src"), "/opt/other"]))
    project = Project(repo, Path("."), "exampleproject.settings", "/usr/bin/python3")
    env = project.env(worktree)
    paths = env["PYTHONPATH"].split(os.pathsep)
    assert paths[0] == str(worktree)
    assert str(worktree / "src") in paths and str(repo / "src") not in paths
    assert "/opt/other" in paths
    assert env["DJANGO_SETTINGS_MODULE"] == "exampleproject.settings"
    assert env[OWNER_ENV].endswith(f":{os.getpid()}")


# -- records -----------------------------------------------------------------------------------
def make(status: str, sha: str, minutes_ago: int = 0, **extra) -> Deployment:
    when = timezone.now() - timedelta(minutes=minutes_ago)
    return Deployment.objects.create(
        status=status,
        target_sha=sha,
        created_at=when,
        started_at=when,
        finished_at=when,
        host=records.hostname(),
        **extra,
    )


@pytest.mark.django_db
def test_rolled_back_release_is_bad_until_a_later_success():
    bad = make("rolled_back", "a" * 40, 10, message="Verify failed")
    assert release_targets.bad_release("a" * 40, innocent_step_names()) == bad
    make("succeeded", "a" * 40, 5)  # --force got it through
    assert release_targets.bad_release("a" * 40, innocent_step_names()) is None


@pytest.mark.django_db
def test_failure_before_the_release_steps_does_not_mark_it_bad():
    refused = make("failed", "b" * 40, 10, message="Cannot fetch origin")
    DeploymentStep.objects.create(deployment=refused, name="fetch", status="failed")
    cancelled = make("rolled_back", "b" * 40, 5, message=f"{records.CANCELLED} by the operator")
    assert cancelled and release_targets.bad_release("b" * 40, innocent_step_names()) is None
    broken = make("failed", "b" * 40, 1, message="Preflight failed")
    DeploymentStep.objects.create(deployment=broken, name="preflight", status="failed")
    assert release_targets.bad_release("b" * 40, innocent_step_names()) == broken


@pytest.fixture
def repo_git(tmp_path) -> tuple[Git, str]:
    """A real git repository with one commit: (its Git, the commit)."""
    from tests.support.repos import make_repo

    path = tmp_path / "repo"
    return Git(path), make_repo(path, commits=1)[0]


@pytest.mark.django_db
def test_rollback_target_is_the_success_before_the_serving_one(repo_git):
    git, commit = repo_git
    first = make("succeeded", "1" * 40, 30)
    make("rolled_back", "2" * 40, 20)
    make("succeeded", "3" * 40, 10)
    assert release_targets.rollback_target(True, {"3" * 40}, None, git)[0] == "1" * 40
    assert release_targets.rollback_target(str(first.pk), set(), None, git) == (
        "1" * 40,
        f"rollback to #{first.pk}",
    )
    assert release_targets.rollback_target(commit[:12], set(), None, git) == (
        commit,
        f"rollback to {commit[:12]}",
    )
    failed = make("failed", "4" * 40, 5)
    with pytest.raises(CommandFailure) as refused:
        release_targets.rollback_target(str(failed.pk), set(), None, git)
    assert refused.value.exit_code == exit_codes.USAGE
    with pytest.raises(CommandFailure) as unknown:
        release_targets.rollback_target("nope", set(), None, git)
    assert unknown.value.exit_code == exit_codes.USAGE
    assert "no such deployment id or commit" in unknown.value.message


@pytest.mark.django_db
def test_rollback_without_history_says_what_to_do(repo_git):
    with pytest.raises(CommandFailure) as refused:
        release_targets.rollback_target(True, {"9" * 40}, None, repo_git[0])
    assert "--rollback ID" in refused.value.message


@pytest.mark.django_db
@override_settings(ZERODEPLOY={"KEEP_OUTPUT_BYTES": 200})
def test_recorded_output_is_redacted_and_bounded():
    recorder = Recorder(warn=lambda line: None)
    recorder.open({"status": "running", "host": records.hostname()}, ["install"], [])
    noisy = (
        "x" * 5000
        + "\nfetching https://deployer:hunter2secret@pypi.example/simple\nPIP_INDEX_URL=https://a:b@c/simple\n"
    )
    recorder.save_step(0, StepResult("install", "failed", "pip install exited 1", 1.0, 1, noisy))
    row = DeploymentStep.objects.get(deployment=recorder.deployment, name="install")
    assert "hunter2secret" not in row.output and "https://***@pypi.example" in row.output
    assert "PIP_INDEX_URL=***" in row.output
    assert len(row.output.encode()) < 300 and "output cut" in row.output


@pytest.mark.django_db
def test_skipped_steps_are_written_with_the_next_write_and_at_the_end():
    recorder = Recorder(warn=lambda line: None)
    planned = ["collectstatic", "switch", "prune", "post_migrate"]
    recorder.open({"status": "running", "host": records.hostname()}, planned, [])

    def statuses() -> list[str]:
        rows = DeploymentStep.objects.filter(deployment=recorder.deployment)
        return list(rows.order_by("position").values_list("status", flat=True))

    recorder.save_step(0, StepResult("collectstatic", "skipped", "static sources unchanged"))
    assert statuses() == ["pending"] * 4  # a skipped step changed nothing: no commit of its own
    recorder.save_step(1, StepResult("switch", "running", "", started_at=timezone.now()))
    assert statuses() == ["skipped", "running", "pending", "pending"]
    recorder.save_step(1, StepResult("switch", "ok", "current: a -> b", 0.01))
    recorder.save_step(2, StepResult("prune", "skipped", "nothing to prune"))
    recorder.drop_pending()  # the end of the deploy: the last skipped step too, no pending left
    assert statuses() == ["skipped", "ok", "skipped"]


@pytest.mark.django_db
def test_running_records_are_marked_interrupted():
    dead = make("running", "d" * 40, 3, pid=999999)
    DeploymentStep.objects.create(deployment=dead, name="migrate", status="running")
    DeploymentStep.objects.create(deployment=dead, name="reload", status="pending")
    current = make("running", "e" * 40, 0, pid=os.getpid())
    stale = interrupted.interrupted_candidates(exclude=current.pk)
    assert stale == [dead]
    assert interrupted.mark_interrupted(stale, os.getpid()) == [dead.pk]
    dead.refresh_from_db()
    assert dead.status == "interrupted" and dead.finished_at
    assert f"pid {os.getpid()}" in dead.message
    assert [(s.name, s.status) for s in dead.steps.all()] == [("migrate", "failed")]


@pytest.mark.django_db
def test_a_live_process_waiting_for_the_lock_is_not_interrupted():
    """An admin deploy's django-q2 worker marks its record running, then waits for the lock:
    the deploy holding the lock must not take it for a dead one."""
    waiter = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.2)
        waiting = make("running", "f" * 40, 0, pid=waiter.pid)
        current = make("running", "e" * 40, 0, pid=os.getpid())
        assert interrupted.interrupted_candidates(exclude=current.pk) == []
    finally:
        waiter.kill()
        waiter.wait()
    assert interrupted.interrupted_candidates(exclude=current.pk) == [waiting]


@pytest.mark.django_db
def test_history_objects_newest_first():
    older = make("succeeded", "1" * 40, 10, previous_sha="0" * 40, ref="origin/main", trigger="cli")
    DeploymentStep.objects.create(
        deployment=older, position=0, name="fetch", status="ok", duration=0.1
    )
    make("failed", "2" * 40, 1, trigger="admin")
    rows = public_history(limit=5)
    assert [r["target_sha"][0] for r in rows] == ["2", "1"]
    keys = {
        "id",
        "status",
        "previous_sha",
        "target_sha",
        "ref",
        "trigger",
        "started_at",
        "finished_at",
        "steps",
    }
    assert keys <= set(rows[0])
    assert rows[1]["steps"] == [
        {"name": "fetch", "status": "ok", "duration": 0.1, "detail": "", "returncode": None}
    ]
    assert public_history(limit=1)[0]["id"] == rows[0]["id"]
    assert "succeeded" in deploy_history.history_table(rows)


@pytest.mark.parametrize("name", ["checkout", "reload", "twice"])
def test_an_extra_step_never_replaces_a_built_in_one(name):
    """Named like a built-in step, an extra step would take over its undo: a failed deploy
    would report "Rolled back" while the new code serves. Refused before anything runs."""
    extra = [{"name": name, "after": "install", "command": ["true"]}]
    if name == "twice":
        extra.append({"name": name, "after": "smoke", "command": ["true"]})
    with pytest.raises(CommandFailure) as info:
        default_steps(extra=extra)
    assert info.value.exit_code == exit_codes.USAGE and "EXTRA_STEPS" in info.value.message
