"""``manage.py deploy`` in place on projects laid out as ``startproject`` makes them.

Each fixture project (tests/support/projects.py) keeps SQLite, media, static files, a ``.env``,
``local_settings.py`` and its virtualenv inside the checkout, git-ignored, and is served by a
real Gunicorn under load. The rule under test: what the preflight checks is what serves. A view
of the fixture computes a digest of the effective settings; the load's Gunicorn workers answer it
over HTTP and the preflight interpreter writes it to a file while it requests the same URL as a
smoke URL: the two must be equal, on every layout.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from django_zerodeploy import shared_paths
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.git import Git
from django_zerodeploy.gunicorn.master import Master
from django_zerodeploy.pipeline.project import Project
from tests.deploy.test_deploy import assert_clean_checkout, history, show, step, under_load
from tests.support.projects import LAYOUTS, ProjectSite, home_template, make_project
from tests.support.wheels import make_wheel

pytestmark = pytest.mark.integration


@pytest.fixture
def project_factory(tmp_path: Path):
    """Make projects and start their Gunicorn; every Gunicorn is stopped at teardown."""
    servers = []

    def make(layout: str, gunicorn_env: dict[str, str] | None = None, **kwargs):
        site = make_project(tmp_path / layout, layout, **kwargs)
        server = site.gunicorn(env=gunicorn_env)
        servers.append(server)
        server.start()
        return site, server

    yield make
    for server in servers:
        server.stop()
        shutil.rmtree(server.site.runtime, ignore_errors=True)


def live_digest(server) -> dict:
    status, _, body = server.get("/digest/")
    assert status == 200, body[:500]
    return json.loads(body)


def preflight_digests(folder: Path, site: ProjectSite) -> list[dict]:
    """Digests the preflight interpreter wrote (its BASE_DIR is the worktree, not the live tree)."""
    found = [json.loads(p.read_text()) for p in sorted(folder.iterdir())]
    return [d for d in found if Path(d["base_dir"]).resolve() != site.server.resolve()]


def manifest(site: ProjectSite) -> bytes:
    return (site.server / "staticfiles" / "staticfiles.json").read_bytes()


NEW_STATIC = {
    "pages/static/pages/new.css": "h1 { font-weight: 300; }\n",
    "pages/templates/pages/home.html": home_template("pages/site.css", "pages/new.css"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_good_release_deploys_and_preflight_sees_the_live_settings(
    project_factory, load_factory, tmp_path, layout
):
    digests = tmp_path / f"digests-{layout}"
    digests.mkdir()  # the preflight writes there: it has Gunicorn's environment
    site, server = project_factory(layout, gunicorn_env={"DIGEST_DIR": str(digests)})
    before = live_digest(server)
    assert before["settings"]["DEBUG"] is False  # production values from .env, in the workers
    assert before["settings"]["BANNER"] == f"production-{layout}"
    assert before["settings"]["SESSION_COOKIE_SECURE"] is True  # from local_settings.py
    if layout == "environ":
        assert before["settings"]["journal_mode"] == "wal"
    good = site.commit_release("v2", NEW_STATIC)  # a new static file, used by the template
    result, report = under_load(site, server, load_factory)
    assert result.returncode == 0, show(result)
    assert report.failed == 0, report.summary()
    assert report.last_marker == "v2", report.summary()
    assert server.served_releases() == {"v2"}
    assert server.healthz()["releaseId"] == good
    assert_clean_checkout(site, good)

    seen = preflight_digests(digests, site)
    assert seen, show(result)  # the preflight requested /digest/
    after = live_digest(server)
    for digest in seen:
        assert digest["settings"] == before["settings"]
        assert digest["digest"] == before["digest"] == after["digest"]
    # the new file was collected into the live STATIC_ROOT before the preflight rendered it
    hashed = json.loads(manifest(site))["paths"]["pages/new.css"]
    assert server.get(f"/static/{hashed}")[0] == 200
    # SQLite's journal and WAL were made next to the live database, and only there
    assert not list(site.runtime.glob("worktrees/*"))
    record = history(site)[0]
    assert "linked" in step(record, "prepare")["detail"]


# -- the environment Gunicorn was started with (a systemd unit's Environment= lines) ----------
UNIT_ENV = {"BANNER": "unit-banner"}  # the .env file's BANNER does not override it
# a release whose page looks its banner up in a table that lacks the unit's: 500, live only
BANNER_TABLE = (
    "from django.conf import settings\n\n"
    "TITLES = {'development': 'Dev', 'production-dotenv': 'Production'}\n\n\n"
    "def title():\n    return TITLES[settings.BANNER]\n"
)


def test_preflight_runs_with_the_environment_gunicorn_was_started_with(
    project_factory, load_factory, tmp_path
):
    digests = tmp_path / "digests"
    digests.mkdir()
    site, server = project_factory("dotenv", gunicorn_env={**UNIT_ENV, "DIGEST_DIR": str(digests)})
    before = live_digest(server)
    assert before["settings"]["BANNER"] == "unit-banner"  # the deploy's shell lacks it
    good = site.commit_release("v2")
    # the deploy's shell points DIGEST_DIR elsewhere: the preflight must not see it
    result, report = under_load(site, server, load_factory, DIGEST_DIR=str(tmp_path))
    assert result.returncode == 0, show(result)
    assert report.failed == 0, report.summary()
    assert report.last_marker == "v2", report.summary()
    assert server.healthz()["releaseId"] == good
    seen = preflight_digests(digests, site)
    assert seen, "the preflight did not request /digest/"
    for digest in seen:
        assert digest["settings"]["BANNER"] == "unit-banner"
        assert digest["digest"] == before["digest"] == live_digest(server)["digest"]
    environment = step(history(site)[0], "environment")["detail"]
    assert f"with Gunicorn master {server.master_pid()}'s environment" in environment


def test_release_failing_only_with_gunicorns_environment_is_refused(project_factory, load_factory):
    site, server = project_factory("dotenv", gunicorn_env=UNIT_ENV)
    v1 = site.server_head()
    views = (site.dev / "pages" / "views.py").read_text()
    files = {
        "pages/titles.py": BANNER_TABLE,
        "pages/views.py": views.replace(
            "def home(request):\n",
            "def home(request):\n    from .titles import title\n\n    title()\n",
        ),
    }
    site.commit_release("v2", files)
    result, report = under_load(site, server, load_factory)
    assert result.returncode == 1, show(result)
    assert report.failed == 0, report.summary()
    assert report.last_marker == "v1", report.summary()
    assert server.served_releases() == {"v1"}
    assert server.healthz()["releaseId"] == v1
    assert_clean_checkout(site, v1)
    record = history(site)[0]
    assert step(record, "preflight")["status"] == "failed", record["steps"]
    assert "500" in record["message"], record["message"]


def test_release_environment_is_the_masters_plus_what_the_deploy_controls(tmp_path, monkeypatch):
    """The composition Project.env makes of a master's environment (no process needed: the
    end-to-end tests above read a real master's)."""
    live, tree = tmp_path / "live", tmp_path / "worktree"
    unit = {
        "BANNER": "unit",
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "GUNICORN_FD": "3",
        "PATH": "/usr/bin",
        "PYTHONPATH": str(live / "lib"),
    }
    master = Master(1, None, live, ["gunicorn", "m.wsgi"], unit, True, False, False, "m.wsgi")
    master.user = "www-data"
    monkeypatch.setenv("BANNER", "shell")
    monkeypatch.setenv("ZERODEPLOY_HEALTHZ_URL", "http://127.0.0.1:8000/healthz/")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    python = str(live / "venv" / "bin" / "python")
    project = Project(live, Path("."), "m.settings", python, base_env=master.child_environ)
    env = project.env(tree)
    assert env["BANNER"] == "unit"
    assert "NOTIFY_SOCKET" not in env and "GUNICORN_FD" not in env
    assert env["PATH"].split(os.pathsep) == [str(live / "venv" / "bin"), "/usr/bin"]
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tree), str(tree / "lib")]
    assert env["DJANGO_SETTINGS_MODULE"] == "m.settings"
    assert env["ZERODEPLOY_HEALTHZ_URL"] == "http://127.0.0.1:8000/healthz/"
    assert "PIP_NO_INDEX" not in env
    pip_env = project.env(tree, ours=True)  # pip: the deploy's own tool
    assert pip_env["BANNER"] == "shell" and pip_env["PIP_NO_INDEX"] == "1"
    assert master.environ_note == "with Gunicorn master 1's environment"
    master.environ, master.environ_known = {}, False  # another user's: unreadable
    assert master.child_environ["BANNER"] == "shell"
    assert "cannot be read (it runs as www-data)" in master.environ_note


# -- broken releases, on one layout ------------------------------------------------------------
FAILING_MIGRATION = {
    "pages/models.py": "from django.db import models\n\n\nclass Tag(models.Model):\n"
    "    name = models.CharField(max_length=20, null=True)\n",
    "pages/migrations/0001_initial.py": "from django.db import migrations, models\n\n"
    "class Migration(migrations.Migration):\n    initial = True\n    dependencies = []\n"
    "    operations = [migrations.CreateModel('Tag', [('id', models.BigAutoField("
    "primary_key=True)), ('name', models.CharField(max_length=20, null=True))])]\n",
    "pages/migrations/0002_boom.py": "from django.db import migrations\n\n"
    "def boom(apps, schema_editor):\n    raise RuntimeError('migration boom')\n\n"
    "class Migration(migrations.Migration):\n    dependencies = [('pages', '0001_initial')]\n"
    "    operations = [migrations.RunPython(boom, migrations.RunPython.noop)]\n",
}


def broken(site: ProjectSite, kind: str, wheels: Path) -> tuple[dict, dict]:
    """(files of the broken release, environment of the deploy)."""
    settings = (site.dev / "myproject" / "settings.py").read_text()
    urls = (site.dev / "myproject" / "urls.py").read_text()
    views = (site.dev / "pages" / "views.py").read_text()
    requirements = (site.dev / "requirements.txt").read_text()
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    if kind == "settings_import_error":
        return {
            "myproject/settings.py": settings + "\nimport missing_settings_helper  # noqa\n"
        }, {}
    if kind == "urlconf_import_error":
        return {"myproject/urls.py": urls + "\nfrom pages.views import missing_view  # noqa\n"}, {}
    if kind == "smoke_500":  # with a new static file: its manifest entry must be undone
        files = dict(NEW_STATIC)
        files["pages/views.py"] = views.replace(
            "def home(request):\n", "def home(request):\n    raise ValueError('home is broken')\n"
        )
        return files, {}
    if kind == "production_only_500":
        # DEBUG=True (no .env) renders this; DEBUG=False with the manifest storage raises
        # "Missing staticfiles manifest entry": only the live settings show the 500
        return {"pages/templates/pages/home.html": home_template("pages/missing.css")}, {}
    if kind == "failing_migration":
        return FAILING_MIGRATION, {}
    if kind == "bad_requirement":
        return {"requirements.txt": requirements + "zd-missing-package==1.0\n"}, offline
    raise AssertionError(kind)


BROKEN = [
    ("settings_import_error", "preflight", "missing_settings_helper"),
    ("urlconf_import_error", "preflight", "missing_view"),
    ("smoke_500", "preflight", "500"),
    ("production_only_500", "preflight", "answered 500"),
    ("failing_migration", "migrate", "pages.0001_initial"),
    ("bad_requirement", "install", "pip install"),
]


@pytest.mark.parametrize(("kind", "failing", "words"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_release_is_refused_and_the_live_state_is_untouched(
    project_factory, load_factory, tmp_path, kind, failing, words
):
    site, server = project_factory("dotenv")
    v1 = site.server_head()
    packages, static = site.packages(), manifest(site)
    (tmp_path / "wheels").mkdir()  # an empty, offline package source: pip fails at once
    files, env = broken(site, kind, tmp_path / "wheels")
    site.commit_release("v2", files)
    result, report = under_load(site, server, load_factory, **env)
    assert result.returncode == 1, show(result)
    assert report.failed == 0, report.summary()
    assert report.last_marker == "v1", report.summary()
    assert server.served_releases() == {"v1"}
    assert server.healthz()["releaseId"] == v1
    assert_clean_checkout(site, v1)
    record = history(site)[0]
    assert step(record, failing)["status"] == "failed", record["steps"]
    assert words in record["message"], record["message"]
    assert result.stdout.count(record["message"].split(":")[0]) == 1, show(result)  # said once
    assert site.packages() == packages
    assert manifest(site) == static  # the previous manifest, byte for byte
    with closing(sqlite3.connect(site.db_path)) as conn:  # the live database still answers
        assert conn.execute("SELECT count(*) FROM django_migrations").fetchone()[0] > 0


def test_failed_requirement_change_restores_the_exact_package_set(
    project_factory, load_factory, tmp_path
):
    """A release that upgrades one package and adds another, then fails its preflight: the
    venv ends with exactly the packages it had (wheels built here, pip offline)."""
    wheels = tmp_path / "wheels"
    for name, version in (
        ("zd-fixture-lib", "1.0"),
        ("zd-fixture-lib", "2.0"),
        ("zd-fixture-extra", "1.0"),
    ):
        make_wheel(wheels, name, version)
    site, server = project_factory("dotenv", requirements="zd-fixture-lib\n")
    site.pip("install", "--no-index", "--find-links", str(wheels), "zd-fixture-lib==1.0")
    before = site.packages()
    assert "zd-fixture-lib==1.0" in before
    settings = (site.dev / "myproject" / "settings.py").read_text()
    requirements = (site.dev / "requirements.txt").read_text()
    site.commit_release(
        "v2",
        {
            "requirements.txt": requirements.replace("zd-fixture-lib\n", "zd-fixture-lib==2.0\n")
            + "zd-fixture-extra==1.0\n",
            "myproject/settings.py": settings + "\nimport missing_settings_helper  # noqa\n",
        },
    )
    env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    result, report = under_load(site, server, load_factory, **env)
    assert result.returncode == 1, show(result)
    assert report.failed == 0, report.summary()
    assert server.served_releases() == {"v1"}
    record = history(site)[0]
    installed = step(record, "install")
    assert installed["status"] == "rolled_back", record["steps"]
    assert (
        "zd-fixture-extra-1.0" in installed["detail"]
        and "zd-fixture-lib-2.0" in installed["detail"]
    )
    assert site.packages() == before
    assert "exact previous package set" in step(record, "rollback:install")["detail"]


# -- the linking itself, without a server ---------------------------------------------------------
def test_sqlite_through_a_link_is_the_same_database_and_keeps_its_wal_beside_it(tmp_path):
    live, tree = tmp_path / "live", tmp_path / "tree"
    live.mkdir(), tree.mkdir()
    with closing(sqlite3.connect(live / "db.sqlite3")) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
    os.symlink(live / "db.sqlite3", tree / "db.sqlite3")
    with closing(sqlite3.connect(tree / "db.sqlite3")) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        assert {p.name for p in live.iterdir()} >= {"db.sqlite3-wal", "db.sqlite3-shm"}
        assert sorted(p.name for p in tree.iterdir()) == ["db.sqlite3"]
    with closing(sqlite3.connect(live / "db.sqlite3")) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_release_tracking_live_state_is_refused_naming_it(tmp_path):
    live, tree = tmp_path / "live", tmp_path / "tree"
    (live / "media").mkdir(parents=True)
    (tree / "media").mkdir(parents=True)  # the release tracks a file in media/
    paths = shared_paths.SharedPaths()
    paths.add("media", "MEDIA_ROOT")
    with pytest.raises(CommandFailure) as refused:
        shared_paths.link_into(tree, live, paths)
    assert "media is live state" in refused.value.message
    assert "SHARED_PATHS_EXCLUDE" in refused.value.message


def test_removing_a_worktree_never_reaches_through_its_links(tmp_path):
    live, tree = tmp_path / "live", tmp_path / "tree"
    (live / "media" / "uploads").mkdir(parents=True)
    (live / "media" / "uploads" / "photo.jpg").write_bytes(b"jpeg")
    (tree / "myproject").mkdir(parents=True)
    paths = shared_paths.SharedPaths()
    for rel, why in (
        ("media", "MEDIA_ROOT"),
        ("media/uploads", "git-ignored"),
        ("__pycache__", "x"),
    ):
        paths.add(rel, why)
    assert list(paths.paths) == ["media"]  # a parent covers its children; bytecode never
    shared_paths.link_into(tree, live, paths)
    shared_paths.unlink_from(tree)
    assert not (tree / "media").exists()
    assert (live / "media" / "uploads" / "photo.jpg").read_bytes() == b"jpeg"


def _repo(path: Path, files: dict[str, str], ignore: str) -> Git:
    path.mkdir()
    (path / ".gitignore").write_text(ignore)
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    for args in (
        ("init", "-q"),
        ("add", "-A"),
        ("-c", "user.email=a@b", "-c", "user.name=A", "commit", "-qm", "x"),
    ):
        subprocess.run(["git", "-C", str(path), *args], check=True)
    return Git(path)


def test_shared_paths_are_the_ignored_state_and_the_settings_paths(tmp_path, settings):
    live = tmp_path / "live"
    repo = _repo(
        live,
        {"manage.py": "", "app/views.py": ""},
        "db.sqlite3*\n.env\nvenv/\n__pycache__/\nlocal_settings.py\nbuild/\n",
    )
    for rel in (
        ".env",
        "db.sqlite3",
        "db.sqlite3-wal",
        "venv/bin/python",
        "app/__pycache__/x.pyc",
        "app/local_settings.py",
        "build/x",
    ):
        (live / rel).parent.mkdir(parents=True, exist_ok=True)
        (live / rel).write_text("")
    settings.MEDIA_ROOT = str(live / "media")  # not there yet, not ignored: still shared
    settings.STATIC_ROOT = str(tmp_path / "elsewhere")  # outside the checkout: nothing to link
    settings.ZERODEPLOY = {"SHARED_PATHS_EXCLUDE": ["build"], "SHARED_PATHS": ["uploads"]}
    found = shared_paths.shared_paths(repo, live)
    assert found.paths == {
        ".env": "git-ignored",
        "app/local_settings.py": "git-ignored",
        "db.sqlite3": "git-ignored",
        "media": "MEDIA_ROOT",
        "uploads": "SHARED_PATHS",
        "venv": "git-ignored",
    }
    shared_paths.refuse_tracked(repo, live, found)  # none of it tracked


def test_a_database_tracked_by_git_is_refused_with_the_fix(tmp_path):
    live = tmp_path / "live"
    repo = _repo(live, {"db.sqlite3": "", "manage.py": ""}, "")
    paths = shared_paths.SharedPaths()
    paths.add("db.sqlite3", "DATABASES['default']['NAME']")
    with pytest.raises(CommandFailure) as refused:
        shared_paths.refuse_tracked(repo, live, paths)
    assert "is tracked by git" in refused.value.message
    assert "git rm -r --cached db.sqlite3" in refused.value.message
