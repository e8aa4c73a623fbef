"""Hardening of the pipeline's edges: git revisions never read as options, webhook input checked,
secrets redacted on every path out, a dry run that never takes the deploy lock, environment
errors reported as one message with exit 2, a missing working directory named as such."""

from __future__ import annotations

import errno
import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse

from django_zerodeploy import exit_codes, proc
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.git import Git, GitError, is_sha
from django_zerodeploy.management.base import ZeroDeployCommand
from django_zerodeploy.models import Deployment
from django_zerodeploy.pipeline import DeployOptions, records
from django_zerodeploy.pipeline.context import DeployContext, Outcome, StepFailed
from django_zerodeploy.pipeline.lock import DeployLock
from django_zerodeploy.pipeline.project import Project
from django_zerodeploy.pipeline.runner import Runner
from django_zerodeploy.pipeline.steps.base import Step
from django_zerodeploy.pipeline.steps.source import FetchStep, PrepareStep, changed_files
from tests.support.site import git

SECRET_URL = "https://deployer:s3cr3t-token@git.example.com/site.git"


# -- git: revisions are never options -----------------------------------------------------------
def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", "-C", str(cwd), *args], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    shas = []
    for n in range(2):
        (path / "a.txt").write_text(f"{n}\n")
        _git(path, "add", "a.txt")
        _git(path, "commit", "-q", "-m", f"Commit {n}")
        shas.append(_git(path, "rev-parse", "HEAD"))
    return path, shas


@pytest.mark.parametrize(
    "call",
    [
        lambda g, opt, sha: g.changed_files(opt, sha),
        lambda g, opt, sha: g.changed_files(sha, opt),
        lambda g, opt, sha: g.log(opt, sha),
        lambda g, opt, sha: g.log(None, opt),
        lambda g, opt, sha: g.commit(opt),
        lambda g, opt, sha: g.is_ancestor(opt, sha),
    ],
)
def test_an_option_looking_revision_is_refused_and_never_read_as_an_option(repo, tmp_path, call):
    path, shas = repo
    written = tmp_path / "written-by-git"
    with pytest.raises(GitError):
        call(Git(path), f"--output={written}", shas[1])
    assert not written.exists()


def test_git_reads_revisions_after_end_of_options(repo, tmp_path, monkeypatch):
    """Even past the wrapper's own check, git is told that no option follows."""
    path, shas = repo
    monkeypatch.setattr("django_zerodeploy.git._revision", lambda rev: rev)
    written = tmp_path / "written-by-git"
    with pytest.raises(GitError):
        Git(path).changed_files(f"--output={written}", shas[1])
    assert not written.exists()
    assert Git(path).changed_files(shas[0], shas[1]) == ["a.txt"]


def test_is_sha_takes_full_lowercase_commit_ids_only():
    assert is_sha("a" * 40)
    assert not is_sha("A" * 40) and not is_sha("a" * 39) and not is_sha("--output=x")
    assert not is_sha(None) and not is_sha(["a" * 40])


@pytest.mark.django_db
def test_reported_releases_that_are_not_commit_ids_never_reach_git(repo, tmp_path):
    path, shas = repo
    written = tmp_path / "written-by-git"
    ctx = DeployContext(DeployOptions(), Project.current(), Git(path), print)
    ctx.serving = {f"--output={written}", shas[0]}
    ctx.head_sha, ctx.target_sha = shas[0], shas[1]
    step = FetchStep()
    ctx.baselines = step._baselines(ctx)
    assert ctx.baselines == {shas[0]}
    assert ctx.unknown_baseline  # git cannot tell what changed: everything is assumed to
    assert changed_files(ctx) == ["a.txt"] and not written.exists()
    assert step._previous(ctx) == shas[0]
    # a release named by a tag (RELEASE_ID) is still compared, as the commit it names
    _git(path, "tag", "v0", shas[0])
    ctx.serving, ctx.unknown_baseline = {"v0"}, False
    assert step._baselines(ctx) == {shas[0]} and not ctx.unknown_baseline


# -- webhook input ------------------------------------------------------------------------------
WEBHOOK_SECRET = "hardening-webhook-secret"


def _post_push(payload: dict) -> object:
    body = json.dumps(payload).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
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


# -- redaction on every path out ------------------------------------------------------------------
class _Says(Step):
    name = "says"

    def run(self, ctx: DeployContext) -> Outcome:
        return Outcome(f"fetched {SECRET_URL}", f"output {SECRET_URL}")


class _Fails(Step):
    name = "fails"

    def run(self, ctx: DeployContext) -> Outcome:
        raise StepFailed(f"cannot push to {SECRET_URL}")


class _Crashes(Step):
    name = "crashes"

    def run(self, ctx: DeployContext) -> Outcome:
        raise RuntimeError(f"boom at {SECRET_URL}")


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path


@pytest.mark.django_db
@pytest.mark.parametrize("last", [_Fails, _Crashes])
def test_step_details_are_redacted_in_the_echo_and_the_result(runtime, last):
    lines: list[str] = []
    with override_settings(ZERODEPLOY={"RUNTIME_DIR": str(runtime)}):
        result = Runner(DeployOptions(), None, lines.append, steps=[_Says(), last()]).run()
    text = "\n".join(lines) + json.dumps(result.as_dict())
    assert "s3cr3t-token" not in text
    assert "https://***@git.example.com" in "\n".join(lines)
    assert [s["name"] for s in result.steps] == ["says", last.name]
    assert all("s3cr3t" not in s["detail"] for s in result.steps)
    assert "***@git.example.com" in result.steps[0]["detail"]


@pytest.mark.django_db
def test_a_broker_error_is_redacted_in_the_record(monkeypatch):
    from django_zerodeploy import tasks

    def refuse(*args, **kwargs):
        raise ConnectionError("Error connecting to redis://:hunter2-pass@broker:6379/0")

    # replaced: django-q2 reads its broker settings once at import (no unreachable broker
    # can be configured per test), and the error text is what this test is about
    monkeypatch.setattr("django_q.tasks.async_task", refuse)
    record = Deployment.objects.create(status=Deployment.Status.QUEUED, trigger="admin")
    assert tasks.enqueue_deployment(record) is None
    record.refresh_from_db()
    assert record.status == Deployment.Status.FAILED
    assert "hunter2" not in record.message and "redis://***@broker" in record.message


@pytest.mark.django_db
def test_a_task_crash_is_redacted_in_the_record():
    from django_zerodeploy import tasks

    record = Deployment.objects.create(status=Deployment.Status.RUNNING, trigger="admin")
    tasks._record_crash(record, RuntimeError(f"lost {SECRET_URL}"))
    record.refresh_from_db()
    assert "s3cr3t" not in record.message and "***@git.example.com" in record.message


# -- the dry run and the deploy lock --------------------------------------------------------------
@pytest.mark.integration
def test_a_dry_run_never_takes_the_deploy_lock(site, gunicorn):
    """A real ``deploy --dry-run`` on a real checkout served by a real Gunicorn: it fetches
    (the plan names the new release) and never even creates the lock file a deploy takes."""
    v2 = site.commit_release("v2")
    lock_file = site.runtime / "deploy.lock"
    assert not lock_file.exists()
    ran = site.manage("deploy", "--dry-run", "--json", check=False, timeout=300)
    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    assert json.loads(ran.stdout)["target_sha"] == v2  # fetched
    assert not lock_file.exists()


@pytest.mark.integration
def test_a_dry_run_beside_a_running_deploy_neither_blocks_nor_fetches(site, gunicorn):
    v1 = site.server_head()
    site.commit_release("v2")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from django_zerodeploy.pipeline.lock import DeployLock; "
            "DeployLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)",
            str(site.runtime / "deploy.lock"),
        ],
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        ran = site.manage("deploy", "--dry-run", "--json", check=False, timeout=120)
        # a running deploy is only a note for the command (docs/deploy.md); the plan says 4
        assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
        shown = json.loads(ran.stdout)
        assert shown["exit_code"] == exit_codes.LOCKED
        assert any(f"pid {holder.pid}" in n and "(no fetch)" in n for n in shown["notes"])
        # the remote-tracking ref is where the last fetch left it: nothing raced the deploy
        assert git(site.server, "rev-parse", "origin/main") == v1
        assert DeployLock(site.runtime / "deploy.lock").held_by().pid == holder.pid  # untouched
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()


# -- environment errors: one message, exit 2 ------------------------------------------------------
class _Unwritable(ZeroDeployCommand):
    def run(self, options):
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/run/deploy.lock")


def test_an_os_error_in_a_command_is_one_line_and_exit_2():
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command(_Unwritable(), stdout=io.StringIO(), stderr=err)
    assert exited.value.code == exit_codes.USAGE
    assert err.getvalue().strip() == "/srv/run/deploy.lock: Permission denied"


def test_an_unusable_lock_file_is_usage_not_a_traceback(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CommandFailure) as failed:
        DeployLock(blocker / "run" / "deploy.lock").acquire()
    assert failed.value.exit_code == exit_codes.USAGE
    assert "Cannot use the deploy lock" in failed.value.message


@pytest.mark.django_db
def test_deploy_exits_2_when_the_lock_file_cannot_be_opened(runtime, capsys):
    (runtime / "deploy.lock").mkdir()  # os.open(O_RDWR) on a directory: IsADirectoryError
    out, err = io.StringIO(), io.StringIO()
    with override_settings(ZERODEPLOY={"RUNTIME_DIR": str(runtime)}):
        with pytest.raises(SystemExit) as exited:
            call_command("deploy", "--no-input", stdout=out, stderr=err)
    printed = "".join(capsys.readouterr()) + out.getvalue() + err.getvalue()  # echo: sys.stdout
    assert exited.value.code == exit_codes.USAGE, printed
    assert "Cannot use the deploy lock" in printed and "Traceback" not in printed


# -- worktrees and the migration plan -------------------------------------------------------------
def test_a_failed_worktree_add_still_leaves_the_path_to_clean_up(runtime):
    class HalfWorktree:
        def worktree_add(self, path: Path, sha: str) -> None:
            path.mkdir()  # what a killed ``git worktree add`` can leave
            raise GitError("git worktree failed: timed out")

    ctx = SimpleNamespace(target_sha="c" * 40, git=HalfWorktree(), worktree=None)
    with override_settings(ZERODEPLOY={"RUNTIME_DIR": str(runtime)}):
        with pytest.raises(StepFailed):
            PrepareStep().run(ctx)  # type: ignore[arg-type]
    assert ctx.worktree is not None and ctx.worktree.parent == runtime / "worktrees"


def test_the_preflight_keeps_the_plan_json_apart_from_stderr(monkeypatch):
    from django_zerodeploy import preflight

    def command(*args, stdout, stderr, **kwargs):
        stderr.write("warning: something on stderr\n")
        stdout.write(json.dumps({"pending": [], "errors": []}))

    # replaced: the real plan command writes nothing on stderr unless a project's code does;
    # the separation of the two streams is what this test is about
    monkeypatch.setattr("django.core.management.call_command", command)
    code, out, err = preflight._migration_plan(False)
    assert code == 0 and json.loads(out) == {"pending": [], "errors": []}
    assert "warning" in err


# -- subprocesses -----------------------------------------------------------------------------------
def test_a_missing_working_directory_is_not_a_missing_command(tmp_path):
    result = proc.run(["true"], cwd=tmp_path / "gone")
    assert not result.ok
    assert "working directory" in result.stderr and "command not found" not in result.stderr
    assert str(tmp_path / "gone") in result.stderr
    (tmp_path / "file").write_text("")
    assert "Not a directory" in proc.run(["true"], cwd=tmp_path / "file").stderr
    missing = proc.run(["no-such-command-zerodeploy"], cwd=tmp_path)
    assert missing.returncode == 127 and "command not found" in missing.stderr


def test_records_use_the_shared_helpers():
    from django_zerodeploy import osutil

    assert records.os_user is osutil.os_user
    assert not hasattr(records, "elapsed")


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
    assert "runtime directory" in record.message
