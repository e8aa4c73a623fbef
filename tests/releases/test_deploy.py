"""Deploys in the releases layout with real Gunicorn under load: the layout made by
``--init-releases`` from a startproject-shaped checkout, Gunicorn started from ROOT/current
(with ``PWD`` set, as a shell starts it: the case where Gunicorn would keep ROOT/current itself
on sys.path), then a code-only release, a broken one, an instant rollback, and a release with
a migration whose rollback is refused."""

from __future__ import annotations

import json
import os
import time

import pytest

from django_zerodeploy.releases.layout import ReleasesRoot
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


def test_code_only_release_a_broken_one_rollback_and_a_migration(
    site, tmp_path, gunicorn_factory, load_factory
):
    root_dir, root, server = serve_from_releases(site, tmp_path, gunicorn_factory)
    first = root.current()
    assert master_cwd(server) == first.path

    v2 = site.commit_release("v2", {"notes/lazy_probe.py": "WHICH = 'v2'\n"})
    result, report = deploy_under_load(site, root_dir, server, load_factory)
    assert result.returncode == 0, show(result)
    assert report.failed == 0, report.summary()
    assert report.last_marker == "v2", report.summary()
    second = root.current()
    assert second.sha12 == v2[:12] and root.previous() == first
    assert second.venv_key == first.venv_key  # a code-only release: the venv reused, no pip
    assert "(reused)" in step_line(result.stdout, "venv")
    assert "skipped" in step_line(result.stdout, "preflight")  # one app boot: the new workers
    # the new master runs from the new release, not from the old one or through the link
    assert master_cwd(server) == second.path
    assert os.path.realpath(first.path / "notes") != os.path.realpath(second.path / "notes")
    assert (first.path / "manage.py").is_file()  # the previous release is untouched

    broken = site.commit_release(
        "v3-broken", {"exampleproject/urls.py": "raise ImportError('broken URLconf')\n"}
    )
    result, report = deploy_under_load(site, root_dir, server, load_factory)
    assert result.returncode == 1, show(result)
    assert report.failed == 0, report.summary()
    assert report.last_marker == "v2", report.summary()
    assert root.current() == second and root.previous() == first  # switched back
    assert "rollback:switch" in result.stdout
    assert master_cwd(server) == second.path
    broken_release = next(r for r in root.releases() if r.sha12 == broken[:12])  # kept to inspect

    rollback_and_migration_phases(site, root_dir, server, load_factory, first, second)
    fourth = root.current()
    # each row names its release and venv, the failed ones too; a rollback the one it went to
    assert recorded_releases(site, root_dir) == [
        ("failed", first.name, first.venv_key),  # the refused rollback: its target
        ("succeeded", fourth.name, fourth.venv_key),
        ("succeeded", first.name, first.venv_key),  # --rollback: v1 and its kept venv
        ("rolled_back", broken_release.name, broken_release.venv_key),
        ("succeeded", second.name, second.venv_key),
    ]
    assert first.venv_key and second.venv_key == first.venv_key
    table = deploy_from_current(site, root_dir, "--history").stdout
    assert f"{fourth.name} {fourth.venv_key}" in table, table


def recorded_releases(site, root_dir) -> list[tuple[str, str, str]]:
    """(status, release directory, venv key) of each Deployment row, newest first, as
    ``deploy --history --json`` prints them."""
    result = deploy_from_current(site, root_dir, "--history", "--json")
    assert result.returncode == 0, show(result)
    return [(r["status"], r["release_dir"], r["venv_key"]) for r in json.loads(result.stdout)]


def rollback_and_migration_phases(site, root_dir, server, load_factory, first, second):
    """From v2 serving (v1 previous): an instant rollback, then a release with a migration,
    whose rollback is refused naming it."""
    root = ReleasesRoot(root_dir)
    began = time.monotonic()
    result, report = deploy_under_load(site, root_dir, server, load_factory, "--rollback")
    took = time.monotonic() - began
    assert result.returncode == 0, show(result)
    assert report.failed == 0, report.summary()
    assert report.last_marker == "v1", report.summary()
    assert root.current() == first and root.previous() == second
    assert master_cwd(server) == first.path
    ran = {ln.split()[0] for ln in result.stdout.splitlines() if ln.startswith("  ")}
    assert {"target", "switch", "reload", "verify", "served_from"} <= ran
    assert not ran & {"fetch", "build", "venv", "collectstatic", "migrate", "install"}
    print(f"rollback under load: {took:.2f} s")

    migration = (
        "from django.db import migrations, models\n\n"
        "class Migration(migrations.Migration):\n"
        "    dependencies = [('notes', '0001_initial')]\n"
        "    operations = [migrations.CreateModel('Tag', [('id', models.BigAutoField("
        "primary_key=True)), ('name', models.CharField(max_length=20))])]\n"
    )
    urls = (REPO_ROOT / "example_project" / "exampleproject" / "urls.py").read_text()
    site.commit_release(
        "v4", {"notes/migrations/0002_tag.py": migration, "exampleproject/urls.py": urls}
    )
    result, report = deploy_under_load(site, root_dir, server, load_factory)
    assert result.returncode == 0, show(result)
    assert report.failed == 0 and report.last_marker == "v4", report.summary()
    assert "ok" in step_line(result.stdout, "preflight")  # a migration: the preflight runs
    assert "notes.0002_tag" in step_line(result.stdout, "migrate")
    fourth = root.current()
    result = deploy_from_current(site, root_dir, "--rollback")
    assert result.returncode == 1, show(result)
    assert "notes.0002_tag" in result.stdout and "Traceback" not in result.stdout + result.stderr
    assert root.current() == fourth and master_cwd(server) == fourth.path
