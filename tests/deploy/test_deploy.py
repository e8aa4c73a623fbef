"""``manage.py deploy`` end to end: real git, real pip, a real Gunicorn under load.

Every deploy runs as a real subprocess (``site.manage("deploy", ...)``), as an operator would
run it, while the load generator counts failed requests. The helpers at the top are shared by
the other ``test_deploy_*`` modules.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from tests.support.gunicorn import Gunicorn
from tests.support.site import Site, git

pytestmark = pytest.mark.integration


# -- helpers shared by the deploy tests ----------------------------------------------------------
def deploy(site: Site, *args: str, timeout: float = 300, **env: str):
    """Run ``manage.py deploy --no-input ARGS`` in the server clone; never raises."""
    return site.manage("deploy", "--no-input", *args, check=False, timeout=timeout, **env)


def history(site: Site) -> list[dict]:
    return json.loads(site.manage("deploy", "--history", "--json", "--limit", "50").stdout)


def step(record: dict, name: str) -> dict:
    return next(s for s in record["steps"] if s["name"] == name)


def db_rows(site: Site, sql: str, *params: object) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(site.db_path, timeout=20)) as conn:
        return conn.execute(sql, params).fetchall()


def step_outputs(site: Site, deployment_id: int) -> str:
    rows = db_rows(
        site,
        "SELECT name, detail, output FROM django_zerodeploy_deploymentstep WHERE deployment_id = ?",
        deployment_id,
    )
    return "\n".join(f"{n}: {d}\n{o}" for n, d, o in rows)


def under_load(
    site: Site, server: Gunicorn, load_factory, *args: str, clients: int = 3, **env: str
):
    """Deploy while the load generator runs; returns (deploy result, load report)."""
    load = load_factory(port=server.port, clients=clients, max_seconds=240, timeout=30).start()
    try:
        with load.operation():
            result = deploy(site, *args, **env)
    finally:
        report = load.stop()
    report.assert_covered()
    return result, report


def show(result) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr[-4000:]}"


def assert_clean_checkout(site: Site, sha: str) -> None:
    assert site.server_head() == sha
    assert site.server_branch() == "main"  # never a detached HEAD
    assert git(site.server, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(site.server, "worktree", "list", "--porcelain").count("worktree ") == 1
    worktrees = site.runtime / "worktrees"
    assert not worktrees.exists() or list(worktrees.iterdir()) == []


def original(site: Site, rel: str) -> str:
    return (site.dev / rel).read_text()


# -- the main job ------------------------------------------------------------------------------------
@pytest.mark.matrix
def test_good_release_deploys_under_load(site, gunicorn_factory, load_factory):
    server = gunicorn_factory(workers=2)
    v1 = site.server_head()
    v2 = site.commit_release("v2")
    result, report = under_load(site, server, load_factory)
    assert result.returncode == 0, show(result)
    assert report.failed == 0, report.summary()
    assert server.served_releases() == {"v2"}
    assert server.healthz()["releaseId"] == v2
    assert_clean_checkout(site, v2)
    assert f"Deployed {v2[:10]}" in result.stdout
    for name in ("fetch", "prepare", "preflight", "checkout", "reload", "verify"):
        assert f"  {name}" in result.stdout  # one progress line per step, with its time
    record = history(site)[0]
    assert record["status"] == "succeeded"
    assert (record["previous_sha"], record["target_sha"], record["trigger"]) == (v1, v2, "cli")
    assert record["ref"] == "origin/main"
    assert record["started_at"] and record["finished_at"]
    assert record["mixed_window_seconds"] is not None and record["mixed_window_seconds"] > 0
    statuses = {s["name"]: s["status"] for s in record["steps"]}
    assert statuses["install"] == "skipped"  # requirements unchanged
    assert statuses["migrate"] == "skipped"  # no migrations
    assert statuses["collectstatic"] == "skipped"  # no static change
    for name in (
        "lock",
        "environment",
        "fetch",
        "prepare",
        "preflight",
        "checkout",
        "reload",
        "verify",
    ):
        assert statuses[name] == "ok", record["steps"]
        assert step(record, name)["duration"] is not None


def test_nothing_to_deploy_is_decided_by_what_serves(site, gunicorn_factory, load_factory):
    server = gunicorn_factory(workers=2)
    master = server.master_pid()
    result, report = under_load(site, server, load_factory)
    assert result.returncode == 0, show(result)
    assert "Nothing to deploy" in result.stdout
    assert report.failed == 0, report.summary()
    assert server.master_pid() == master  # no reload
    record = history(site)[0]
    assert record["status"] == "nothing"
    assert [s["name"] for s in record["steps"]] == ["lock", "environment", "fetch"]

    # HEAD moved by hand (git pull without reload): workers still serve v1, so it deploys
    v2 = site.commit_release("v2")
    git(site.server, "pull", "-q", "--ff-only")
    assert site.server_head() == v2 and server.served_release() == "v1"
    result, report = under_load(site, server, load_factory)
    assert result.returncode == 0, show(result)
    assert "Nothing to deploy" not in result.stdout
    assert report.failed == 0, report.summary()
    assert server.served_releases() == {"v2"}
    assert_clean_checkout(site, v2)


def test_requirement_change_runs_install_and_collectstatic(site, gunicorn_factory, load_factory):
    server = gunicorn_factory(workers=2)
    requirements = original(site, "requirements.txt")
    assert "psutil" in requirements  # already satisfied: pip runs without the network
    v2 = site.commit_release(
        "v2", {"requirements.txt": requirements + "# pinned for the demo\npsutil>=5.9\n"}
    )
    result, report = under_load(site, server, load_factory)
    assert result.returncode == 0, show(result)
    assert report.failed == 0, report.summary()
    assert server.served_releases() == {"v2"}
    assert_clean_checkout(site, v2)
    record = history(site)[0]
    assert step(record, "install")["status"] == "ok"
    assert "requirements.txt changed" in step_outputs(site, record["id"])
    assert step(record, "collectstatic")["status"] == "ok"  # installed packages changed


def test_static_change_collects_static_files(site, gunicorn_factory, load_factory):
    server = gunicorn_factory(workers=2)
    css = "body { color: rebeccapurple; }\n"
    v2 = site.commit_release("v2", {"notes/static/notes/site.css": css})
    result, report = under_load(site, server, load_factory)
    assert result.returncode == 0, show(result)
    assert report.failed == 0, report.summary()
    assert (site.static_root / "notes" / "site.css").read_text() == css
    record = history(site)[0]
    assert step(record, "collectstatic")["status"] == "ok"
    assert step(record, "install")["status"] == "skipped"
    assert_clean_checkout(site, v2)


def test_dry_run_changes_nothing(site, gunicorn_factory, load_factory):
    server = gunicorn_factory(workers=2)
    migration = (
        "from django.db import migrations, models\n\n"
        "class Migration(migrations.Migration):\n"
        "    dependencies = [('notes', '0001_initial')]\n"
        "    operations = [migrations.CreateModel('Tag', [('id', models.BigAutoField(primary_key=True)),"
        " ('name', models.CharField(max_length=20))])]\n"
    )
    v2 = site.commit_release(
        "v2",
        {
            "requirements.txt": original(site, "requirements.txt") + "psutil>=5.9\n",
            "notes/migrations/0002_tag.py": migration,
            "notes/static/notes/extra.css": "p { margin: 0; }\n",
        },
    )
    before = snapshot(site, server)
    load = load_factory(port=server.port, clients=2, max_seconds=120).start()
    with load.operation():
        result = deploy(site, "--dry-run")
        as_json = deploy(site, "--dry-run", "--json")
    report = load.stop()
    assert result.returncode == 0, show(result)
    assert as_json.returncode == 0, show(as_json)
    report.assert_covered()
    assert report.failed == 0, report.summary()
    assert snapshot(site, server) == before
    out = result.stdout
    assert "Dry run: nothing was changed." in out
    assert f"{v2[:10]} Release v2" in out  # the commits
    assert "requirements.txt" in out and "notes/migrations/0002_tag.py" in out  # changed files
    assert "notes.0002_tag" in out  # pending migrations
    lines = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.startswith("  ") and len(line.split()) > 1
    }
    assert lines["install"].split()[1] == "run" and "requirements.txt changed" in lines["install"]
    assert lines["migrate"].split()[1] == "run"
    assert lines["collectstatic"].split()[1] == "run"
    plan = json.loads(as_json.stdout)
    assert plan["target_sha"] == v2
    assert [m["name"] for m in plan["pending_migrations"]] == ["0002_tag"]
    assert {s["name"]: s["run"] for s in plan["steps"]}["reload"] is True


def snapshot(site: Site, server: Gunicorn) -> dict:
    """Everything a dry run must leave alone: the tree, the database, the processes."""
    files = {}
    for folder, dirs, names in os.walk(site.server):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            path = Path(folder) / name
            stat = path.stat()
            files[str(path.relative_to(site.server))] = (stat.st_size, stat.st_mtime_ns)
    with contextlib.closing(sqlite3.connect(site.db_path, timeout=20)) as conn:
        dump = "\n".join(conn.iterdump())
    master = server.master_pid()
    return {
        "head": site.server_head(),
        "branch": site.server_branch(),
        "status": git(site.server, "status", "--porcelain", "--untracked-files=all"),
        "worktrees": git(site.server, "worktree", "list"),
        "files": files,
        "database": dump,
        "static": sorted(str(p.relative_to(site.static_root)) for p in site.static_root.rglob("*")),
        "master": master,
        "workers": sorted(server.worker_pids(master)),
        "served": server.served_releases(),
    }


def test_rollback_to_the_previous_release_and_to_an_id(site, gunicorn_factory, load_factory):
    server = gunicorn_factory(workers=2)
    load = load_factory(port=server.port, clients=3, max_seconds=280, timeout=30).start()
    try:
        with load.operation():
            v2 = site.commit_release("v2")
            assert deploy(site).returncode == 0
            v3 = site.commit_release("v3")
            result = deploy(site)
            assert result.returncode == 0, show(result)
            assert server.served_releases() == {"v3"}

            back = deploy(site, "--rollback")
            assert back.returncode == 0, show(back)
            assert server.served_releases() == {"v2"}
            assert_clean_checkout(site, v2)

            records = history(site)
            assert records[0]["status"] == "succeeded" and records[0]["target_sha"] == v2
            assert records[0]["ref"].startswith("rollback to #")
            assert records[0]["message"].startswith(f"Rolled back to {v2[:10]} "), records[0]
            v3_id = next(r["id"] for r in records if r["target_sha"] == v3)
            # a plain deploy now would move forward again; --rollback ID goes to that deploy's release
            again = deploy(site, "--rollback", str(v3_id))
            assert again.returncode == 0, show(again)
            assert server.served_releases() == {"v3"}
            assert_clean_checkout(site, v3)
    finally:
        report = load.stop()
    report.assert_covered()
    assert report.failed == 0, report.summary()


def test_modified_tracked_file_on_the_server_refuses(site, gunicorn_factory, load_factory):
    server = gunicorn_factory(workers=2)
    v1 = site.server_head()
    views = site.server / "notes" / "views.py"
    views.write_text(views.read_text() + "\n# hotfix typed on the server\n")
    site.commit_release("v2")
    result, report = under_load(site, server, load_factory)
    assert result.returncode == 2, show(result)
    assert "notes/views.py" in result.stderr + result.stdout
    assert report.failed == 0, report.summary()
    assert site.server_head() == v1
    assert "hotfix typed on the server" in views.read_text()  # never overwritten
    assert server.served_releases() == {"v1"}
    assert history(site) == []  # refused before it started: no record


@pytest.mark.parametrize(
    "args",
    [
        ["--ref=--upload-pack=touch pwned"],
        ["--ref=-x"],
        ["--rollback=--output=pwned"],
    ],
)
def test_ref_starting_with_a_dash_is_refused(site, gunicorn_factory, load_factory, args):
    server = gunicorn_factory(workers=1)
    v1 = site.server_head()
    result, report = under_load(site, server, load_factory, *args, clients=1)
    assert result.returncode == 2, show(result)
    assert "not a valid git ref" in result.stderr
    assert report.failed == 0, report.summary()
    assert not (site.server / "pwned").exists()
    assert site.server_head() == v1
    assert history(site) == []


def test_no_reload_deploys_without_gunicorn_and_runs_extra_steps(site):
    """--no-reload: everything but the reload (Gunicorn is not started in this test). The second
    deploy runs the EXTRA_STEPS that the first one put into the live settings."""
    marker = site.root / "extra-step.txt"
    script = (
        "import os, pathlib; pathlib.Path(os.environ['MARKER']).write_text("
        "os.getcwd() + '\\n' + os.environ['ZERODEPLOY_TARGET_SHA'])"
    )
    settings_text = original(site, "exampleproject/settings.py") + (
        "\nZERODEPLOY['EXTRA_STEPS'] = [{'name': 'marker', 'after': 'install', "
        f"'command': ['python', '-c', {script!r}]}}]\n"
    )
    v2 = site.commit_release("v2", {"exampleproject/settings.py": settings_text})
    first = deploy(site, "--no-reload", MARKER=str(marker))
    assert first.returncode == 0, show(first)
    assert not marker.exists()  # the live settings had no extra step yet
    assert_clean_checkout(site, v2)
    v3 = site.commit_release("v3")
    second = deploy(site, "--no-reload", MARKER=str(marker))
    assert second.returncode == 0, show(second)
    cwd, sha = marker.read_text().splitlines()
    assert sha == v3
    assert "/worktrees/" in cwd  # placed after install: runs in the worktree, before checkout
    record = history(site)[0]
    names = [s["name"] for s in record["steps"]]
    assert names.index("marker") == names.index("install") + 1
    assert step(record, "reload")["status"] == "skipped"
    assert_clean_checkout(site, v3)


def test_json_result_and_verify_without_healthz_url(site, gunicorn_factory, load_factory):
    """Without HEALTHZ_URL the verify step asks /healthz/ on the address Gunicorn binds."""
    server = gunicorn_factory(workers=2)
    v2 = site.commit_release("v2")
    result, report = under_load(site, server, load_factory, "--json", ZERODEPLOY_HEALTHZ_URL="")
    assert result.returncode == 0, show(result)
    assert report.failed == 0, report.summary()
    data = json.loads(result.stdout)  # progress went to stderr
    assert data["status"] == "succeeded" and data["exit_code"] == 0
    assert data["target_sha"] == v2 and data["deployment_id"]
    assert "reload" in [s["name"] for s in data["steps"]]
    assert "  reload" in result.stderr
    verify = next(s for s in data["steps"] if s["name"] == "verify")
    expected = f"http://127.0.0.1:{server.port}/healthz/ (Gunicorn's bind) reports releaseId '{v2}'"
    assert verify["status"] == "ok" and expected in verify["detail"]
    assert server.served_releases() == {"v2"}


def test_check_migrations_classifies_the_current_code(site):
    """--check-migrations (for CI) exits with the migration safety check's code; no deploy."""
    ok = deploy(site, "--check-migrations")
    assert ok.returncode == 0, show(ok)
    remove = (
        "from django.db import migrations\n\n"
        "class Migration(migrations.Migration):\n"
        "    dependencies = [('notes', '0001_initial')]\n"
        "    operations = [migrations.RemoveField('note', 'created_at')]\n"
    )
    (site.server / "notes" / "migrations" / "0002_remove.py").write_text(remove)
    refused = deploy(site, "--check-migrations")
    assert refused.returncode == 1, show(refused)
    assert "RemoveField" in refused.stdout + refused.stderr
    assert history(site) == []


def test_gunicorn_not_running_needs_a_person(site):
    """The site is not served at all: exit 3 before anything changes (--no-reload deploys)."""
    v1 = site.server_head()
    site.commit_release("v2")
    result = deploy(site)
    assert result.returncode == 3, show(result)
    assert "no Gunicorn master of this project" in result.stdout
    assert_clean_checkout(site, v1)
    assert history(site) == []
