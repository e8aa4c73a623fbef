"""``deploy --dry-run`` (and ``--dry-run --rollback``) in the releases layout, from ROOT/current
as documented, on a real layout made by ``--init-releases``, real git and a real Gunicorn with
our hook: the plan names the release it would build, its venv (reused for a code-only release,
new with the requirements that changed), the preflight rule, the switch and the prune, and a
rollback the migrations refuse; and nothing changes (releases, links, venvs, records, what
serves)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from tests.support.releases import (
    deploy_from_current,
    deploy_under_load,
    master_cwd,
    serve_from_releases,
    show,
    step_line,
)
from tests.support.site import REPO_ROOT

pytestmark = pytest.mark.integration

MIGRATION = (
    "from django.db import migrations, models\n\n"
    "class Migration(migrations.Migration):\n"
    "    dependencies = [('notes', '0001_initial')]\n"
    "    operations = [migrations.CreateModel('Tag', [('id', models.BigAutoField("
    "primary_key=True)), ('name', models.CharField(max_length=20))])]\n"
)


def state(root_dir: Path) -> dict[str, object]:
    """What a dry run must leave as it was."""
    db = (root_dir / "current" / "db.sqlite3").resolve()
    with sqlite3.connect(db) as conn:
        records = conn.execute("select count(*) from django_zerodeploy_deployment").fetchone()[0]
    return {
        "releases": sorted(os.listdir(root_dir / "releases")),
        "current": os.readlink(root_dir / "current"),
        "previous": os.readlink(root_dir / "previous"),
        "venvs": sorted(os.listdir(root_dir / "venvs")),
        "metadata": sorted(os.listdir(root_dir / ".zerodeploy")),
        "deployments": records,
    }


def test_dry_run_plans_the_release_its_venv_switch_and_rollback_and_changes_nothing(
    site, tmp_path, gunicorn_factory, load_factory
):
    root_dir, root, server = serve_from_releases(site, tmp_path, gunicorn_factory)
    first = root.current()
    site.commit_release("v2", {"notes/migrations/0002_tag.py": MIGRATION})
    result, report = deploy_under_load(site, root_dir, server, load_factory)
    assert result.returncode == 0, show(result)
    assert report.failed == 0 and report.last_marker == "v2", report.summary()
    second = root.current()
    code_only = site.commit_release("v3", {"notes/lazy_probe.py": "WHICH = 'v3'\n"})
    requirements = (REPO_ROOT / "example_project" / "requirements.txt").read_text()
    new_reqs = site.commit_release("v4", {"requirements.txt": requirements + "# v4\n"})
    before = state(root_dir)
    site.extra_env["ZERODEPLOY_KEEP_RELEASES"] = "1"  # the dry runs: v1 would be pruned

    # a code-only release: the venv reused, no preflight (the readiness gate checks it)
    plan = deploy_from_current(site, root_dir, "--dry-run", "--ref", code_only)
    assert plan.returncode == 0, show(plan)
    out = plan.stdout
    assert f"Target: {code_only} = {code_only[:10]} (Release v3)" in out
    assert f"current is {second.name} (venv {second.venv_key})" in out
    build = step_line(out, "build")
    name = build.split("releases/")[1].split(":")[0]
    assert name.endswith(f"-{code_only[:12]}") and name not in before["releases"]
    assert step_line(out, "venv").split()[1:] == ["run", "reuse", second.venv_key]
    assert "skip" in step_line(out, "preflight") and "readiness gate" in step_line(out, "preflight")
    assert "skip" in step_line(out, "collectstatic") and "skip" in step_line(out, "migrate")
    assert step_line(out, "switch").endswith(f"current: {second.name} -> {name}")
    assert step_line(out, "reload").split()[1] == "run"
    assert step_line(out, "prune").endswith(
        f"KEEP_RELEASES 1: would remove 1 release(s): {first.name}"
    )  # the venv v1 runs with stays: v2, previous after the switch, runs with it too
    assert "prepare" not in out and "git reset --keep" not in out and "Traceback" not in out

    # a requirement change, as JSON: a new venv, which file changed, the preflight runs
    plan = deploy_from_current(site, root_dir, "--dry-run", "--json")
    assert plan.returncode == 0, show(plan)
    data = json.loads(plan.stdout)
    steps = {s["name"]: s for s in data["steps"]}
    assert data["target_sha"] == new_reqs and data["layout"]["current"] == second.name
    venv = steps["venv"]["facts"]
    assert venv["reuse"] is False and venv["requirements_changed"] == ["requirements.txt"]
    assert venv["key"] and venv["key"] not in before["venvs"]
    assert (steps["preflight"]["run"], steps["preflight"]["reason"]) == (True, "a new venv")
    assert steps["collectstatic"]["run"] is True
    built = steps["build"]["facts"]["release"]
    assert built.endswith(new_reqs[:12])
    assert steps["switch"]["facts"] == {"from": second.name, "to": built}
    assert steps["prune"]["facts"] == {"keep": 1, "releases": [first.name], "venvs": []}

    # the rollback v2 -> v1 is refused: v2's deploy applied a migration v1 does not have
    plan = deploy_from_current(site, root_dir, "--dry-run", "--rollback")
    assert plan.returncode == 1, show(plan)
    assert "The deploy would refuse: Rollback to" in plan.stdout
    assert "notes.0002_tag" in plan.stdout and "Traceback" not in plan.stdout + plan.stderr
    target = step_line(plan.stdout, "target")
    assert f"{second.name} -> {first.name} (venv {first.venv_key})" in target
    assert step_line(plan.stdout, "switch").endswith(f"current: {second.name} -> {first.name}")
    assert "fetch" not in plan.stdout.split("Steps:")[1] and "build" not in plan.stdout
    plan = deploy_from_current(site, root_dir, "--dry-run", "--rollback", "--json")
    facts = {s["name"]: s for s in json.loads(plan.stdout)["steps"]}["target"]["facts"]
    assert facts["release"] == first.name and facts["refused_migrations"] == ["notes.0002_tag"]

    assert state(root_dir) == before
    assert master_cwd(server) == second.path  # still served by the release that served
    assert os.listdir(site.runtime / "worktrees") == []  # the plan's worktree is gone
