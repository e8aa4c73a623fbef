"""Migration safety inside ``manage.py deploy``, under load, on a real PostgreSQL.

The old release serves ``/notes/?write=1`` (reads and writes the notes table) through a real
Gunicorn while the deploy runs: a safe migration costs no request, the same unsafe migration
forced through costs many (proof that the check matters), and a transaction holding a lock
makes the migration fail within the lock timeout while requests keep flowing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.migration_apps.project import PG, pg_create, pg_drop, require_postgres
from tests.support.site import Site, git, make_site

pytestmark = pytest.mark.integration

NOTES = "/notes/?write=1"

MODELS_WITHOUT_TEXT = """from django.db import models


class Note(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"note {self.pk}"
"""

VIEWS_WITHOUT_TEXT = '''import time

from django.http import HttpResponse
from django.shortcuts import render

from .models import Note
from .release import RELEASE_NAME


def _mark(response):
    response["X-Example-Release"] = RELEASE_NAME
    return response


def home(request):
    return _mark(render(request, "notes/home.html", {"release": RELEASE_NAME}))


def notes(request):
    """The new release no longer has Note.text."""
    if request.method == "POST" or request.GET.get("write"):
        Note.objects.create()
    count = Note.objects.count()
    latest = list(Note.objects.order_by("-id").values_list("id", flat=True)[:3])
    return _mark(HttpResponse(f"release={RELEASE_NAME} notes={count} latest={latest}\\n"))


def slow(request):
    seconds = min(float(request.GET.get("s", "5")), 30)
    time.sleep(seconds)
    return _mark(HttpResponse(f"release={RELEASE_NAME} slept={seconds}\\n"))
'''

REMOVE_TEXT = """from django.db import migrations


class Migration(migrations.Migration):
%(marker)s
    dependencies = [("notes", "%(after)s")]
    operations = [migrations.RemoveField("note", "text")]
"""

TEXT_NULLABLE = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.AlterField("note", "text", models.CharField(max_length=200, null=True))]
"""

ADD_TAG = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.AddField("note", "tag", models.CharField(max_length=20, null=True))]
"""

DATA_SQL = """from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("notes", "0002_note_text_nullable")]
    operations = [migrations.RunSQL("UPDATE notes_note SET text = NULL WHERE text = \'\'", migrations.RunSQL.noop)]
"""

MODELS_WITH_TAG = """from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    tag = models.CharField(max_length=20, null=True)

    def __str__(self):
        return self.text
"""


def unsafe_release(marker: str = "") -> dict[str, str]:
    """Drop notes_note.text while the old release still reads and writes it."""
    return {
        "notes/migrations/0002_remove_note_text.py": REMOVE_TEXT
        % {"marker": marker, "after": "0001_initial"},
        "notes/models.py": MODELS_WITHOUT_TEXT,
        "notes/views.py": VIEWS_WITHOUT_TEXT,
    }


def expand_contract_release() -> dict[str, str]:
    """The same end state done safely: text nullable before the reload, dropped after it."""
    return {
        "notes/migrations/0002_note_text_nullable.py": TEXT_NULLABLE,
        "notes/migrations/0003_remove_note_text.py": REMOVE_TEXT
        % {"marker": '    zerodeploy = {"stage": "post"}', "after": "0002_note_text_nullable"},
        "notes/models.py": MODELS_WITHOUT_TEXT,
        "notes/views.py": VIEWS_WITHOUT_TEXT,
    }


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The example site on its own fresh PostgreSQL database (dropped afterwards)."""
    require_postgres()
    name = pg_create("zd_deploy")
    try:
        made = make_site(tmp_path / "site", migrate=False)
        made.extra_env = {"EXAMPLE_DB_ENGINE": "postgresql", "EXAMPLE_DB_NAME": name}
        made.manage("migrate", "--noinput")
        made.manage("collectstatic", "--noinput")
        made.db_name = name  # type: ignore[attr-defined]
        yield made
    finally:
        pg_drop(name)


def _columns(site: Site) -> set[str]:
    import psycopg

    with psycopg.connect(dbname=site.db_name, autocommit=True, **PG) as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'notes_note'"
        ).fetchall()
    return {r[0] for r in rows}


def _last_record(site: Site) -> dict:
    history = site.manage("deploy", "--history", "--json", "--limit", "1")
    return json.loads(history.stdout)[0]


def _deploy_under_load(site: Site, server, load_factory, *args: str, settle: float = 1.0):
    load = load_factory(
        port=server.port, path=NOTES, clients=3, max_seconds=240, timeout=30
    ).start()
    time.sleep(settle)  # the old release serves before the deploy starts
    with load.operation():
        result = site.manage("deploy", "--no-input", *args, check=False, timeout=400)
    time.sleep(settle)
    report = load.stop()
    report.assert_covered()
    took = report.window[1] - report.window[0]
    # shown with pytest -s; the numbers in docs/migrations.md come from here
    print(
        f"\n[measure] deploy {' '.join(args)} exit {result.returncode} in {took:.1f} s: {report.summary()}"
    )
    return result, report


def test_unsafe_migration_is_refused_before_the_live_tree_moves(
    site, gunicorn_factory, load_factory
):
    server = gunicorn_factory()
    before = site.server_head()
    site.commit_release("v2", unsafe_release())
    result, report = _deploy_under_load(site, server, load_factory)

    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "preflight      failed" in out
    assert (
        'notes.0002_remove_note_text (pre-deploy), RemoveField "Remove field text from note"' in out
    )
    assert "why the old release breaks: drops column notes_note.text" in out
    assert "safe sequence: expand → deploy → contract" in out
    assert "--allow-unsafe-migrations" in out
    assert "Traceback" not in out
    # nothing changed: code, schema, serving release
    assert site.server_head() == before
    assert git(site.server, "status", "--porcelain") == ""
    assert "text" in _columns(site)
    assert report.failed == 0, report.summary()
    assert report.markers == {"v1": report.total}
    assert server.served_release() == "v1"
    record = _last_record(site)
    assert record["status"] in ("failed", "rolled_back")
    assert "RemoveField" in record["message"]
    assert record["applied_migrations"] == []
    assert record["unsafe_migrations_acknowledged"] is False


@pytest.mark.parametrize("acknowledged_by", ["flag", "marker"])
def test_forcing_the_unsafe_migration_breaks_the_old_release(
    site, gunicorn_factory, load_factory, acknowledged_by
):
    """The proof that the check matters: acknowledged (by the deploy's flag or by the
    migration's own marker), the same release costs requests."""
    server = gunicorn_factory()
    if acknowledged_by == "flag":
        target = site.commit_release("v2", unsafe_release())
        args = ["--allow-unsafe-migrations"]
    else:
        marker = '    zerodeploy = {"allow_unsafe": "the demo wants to see it fail"}'
        target = site.commit_release("v2", unsafe_release(marker))
        args = []
    result, report = _deploy_under_load(site, server, load_factory, *args)

    assert result.returncode == 0, result.stdout + result.stderr
    assert site.server_head() == target
    assert "text" not in _columns(site)
    assert server.served_release() == "v2"
    # the old release, still serving between the migrate step and the reload, failed
    assert report.failed > 0, report.summary()
    assert {h.status for h in report.failures} == {500}, report.summary()
    assert report.last_marker == "v2"
    record = _last_record(site)
    assert record["status"] == "succeeded"
    assert record["unsafe_migrations_acknowledged"] is True
    assert record["applied_migrations"] == ["notes.0002_remove_note_text"]


def test_expand_contract_reaches_the_same_schema_with_zero_failed_requests(
    site, gunicorn_factory, load_factory
):
    """text nullable pre-deploy, dropped post-deploy: the same end state, no failed request."""
    server = gunicorn_factory()
    target = site.commit_release("v2", expand_contract_release())
    dry = site.manage("deploy", "--dry-run", check=False)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "notes.0002_note_text_nullable [pre-deploy]" in dry.stdout
    assert "notes.0003_remove_note_text [post-deploy]" in dry.stdout

    result, report = _deploy_under_load(site, server, load_factory)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "post_migrate" in result.stdout
    assert site.server_head() == target
    assert "text" not in _columns(site)
    assert report.failed == 0, report.summary()
    assert report.markers["v1"] > 0 and report.last_marker == "v2", report.summary()
    assert server.served_release() == "v2"
    record = _last_record(site)
    assert record["status"] == "succeeded"
    assert record["unsafe_migrations_acknowledged"] is False
    assert record["applied_migrations"] == [
        "notes.0002_note_text_nullable",
        "notes.0003_remove_note_text",
    ]
    steps = {s["name"]: s["status"] for s in record["steps"]}
    assert steps["migrate"] == "ok" and steps["post_migrate"] == "ok"


def test_safe_migration_deploys_with_zero_failed_requests(site, gunicorn_factory, load_factory):
    server = gunicorn_factory()
    target = site.commit_release(
        "v2", {"notes/migrations/0002_note_tag.py": ADD_TAG, "notes/models.py": MODELS_WITH_TAG}
    )
    result, report = _deploy_under_load(site, server, load_factory)

    assert result.returncode == 0, result.stdout + result.stderr
    assert site.server_head() == target
    assert "tag" in _columns(site)
    assert report.failed == 0, report.summary()
    assert report.markers["v1"] > 0 and report.last_marker == "v2", report.summary()
    record = _last_record(site)
    assert record["applied_migrations"] == ["notes.0002_note_tag"]
    assert record["unsafe_migrations_acknowledged"] is False


class TableReader:
    """A long transaction that has read notes_note: ACCESS SHARE lets the site's SELECTs and
    INSERTs through but blocks any ALTER TABLE (ACCESS EXCLUSIVE) until it ends."""

    def __init__(self, db_name: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dbname=db_name, **PG)
        self.conn.execute("SELECT count(*) FROM notes_note").fetchone()

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def test_long_transaction_makes_the_migration_time_out_and_the_deploy_roll_back(
    site, gunicorn_factory, load_factory
):
    server = gunicorn_factory()
    before = site.server_head()
    settings_py = (site.dev / "exampleproject" / "settings.py").read_text()
    # the release configures a short lock timeout and two attempts (the defaults are 5s and 3)
    tuned = (
        settings_py
        + '\nZERODEPLOY["MIGRATION_LOCK_TIMEOUT"] = "2s"\nZERODEPLOY["MIGRATION_RETRIES"] = 2\n'
    )
    site.commit_release(
        "v2",
        {
            "notes/migrations/0002_note_tag.py": ADD_TAG,
            "notes/models.py": MODELS_WITH_TAG,
            "exampleproject/settings.py": tuned,
        },
    )
    holder = TableReader(site.db_name)  # type: ignore[attr-defined]
    try:
        result, report = _deploy_under_load(site, server, load_factory)
    finally:
        holder.release()

    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "migrate        failed" in out
    assert (
        "notes.0002_note_tag could not take its lock within lock_timeout (2000 ms) in 2 attempt(s)"
        in out
    )
    assert "Traceback" not in out
    # rolled back: the previous code on disk and serving, the schema unchanged
    assert site.server_head() == before
    assert "tag" not in _columns(site)
    assert server.served_release() == "v1"
    # requests waited behind the queued ALTER at most for the lock timeout, none failed
    assert report.failed == 0, report.summary()
    assert report.markers == {"v1": report.total}
    record = _last_record(site)
    assert record["status"] == "rolled_back"
    assert record["applied_migrations"] == []
    steps = {s["name"]: s["status"] for s in record["steps"]}
    assert steps["migrate"] == "failed"

    # with the long transaction gone, the same release deploys (--force: it was marked bad)
    again, report = _deploy_under_load(site, server, load_factory, "--force")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "tag" in _columns(site)
    assert report.failed == 0, report.summary()
    assert server.served_release() == "v2"


def test_check_migrations_for_ci(site):
    """``deploy --check-migrations``: the plan of the checked-out code, no deploy."""
    site.commit_release("v2", unsafe_release())
    git(site.server, "pull", "-q", "--ff-only")  # CI has the new code checked out
    refused = site.manage("deploy", "--check-migrations", check=False)
    assert refused.returncode == 1
    assert "pre    UNSAFE   notes.0002_remove_note_text" in refused.stdout
    assert "why the old release breaks: drops column notes_note.text" in refused.stderr
    assert "text" in _columns(site)
    as_json = site.manage("deploy", "--check-migrations", "--json", check=False)
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert [(op["app"], op["name"], op["operation"]) for op in data["unsafe"]] == [
        ("notes", "0002_remove_note_text", "RemoveField")
    ]
    allowed = site.manage("deploy", "--check-migrations", "--allow-unsafe-migrations", check=False)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


def test_dry_run_shows_stage_and_classification_and_changes_nothing(site, gunicorn_factory):
    server = gunicorn_factory()
    before = site.server_head()
    files = {
        "notes/migrations/0002_note_text_nullable.py": TEXT_NULLABLE,
        "notes/migrations/0003_note_data.py": DATA_SQL,
        "notes/migrations/0004_remove_note_text.py": REMOVE_TEXT
        % {"marker": '    zerodeploy = {"stage": "post"}', "after": "0003_note_data"},
        "notes/models.py": MODELS_WITHOUT_TEXT,
        "notes/views.py": VIEWS_WITHOUT_TEXT,
    }
    site.commit_release("v2", files)
    dry = site.manage("deploy", "--dry-run", check=False)
    out = dry.stdout
    assert dry.returncode == 0, out + dry.stderr
    assert "notes.0002_note_text_nullable [pre-deploy]" in out
    assert "notes.0003_note_data [pre-deploy]" in out
    assert "notes.0004_remove_note_text [post-deploy]" in out
    stripped = [line.strip() for line in out.splitlines()]
    assert any(line.startswith("safe") and "AlterField" in line for line in stripped), out
    assert any(line.startswith("unknown") and "RunSQL" in line for line in stripped), out
    assert any(line.startswith("safe") and "RemoveField" in line for line in stripped), out
    assert "post_migrate   run" in out
    # nothing changed
    assert site.server_head() == before
    assert git(site.server, "status", "--porcelain") == ""
    assert "text" in _columns(site)
    assert server.served_release() == "v1"


def test_dry_run_shows_a_refused_plan(site, gunicorn_factory):
    server = gunicorn_factory()
    before = site.server_head()
    files = unsafe_release()
    site.commit_release("v2", files)
    dry = site.manage("deploy", "--dry-run", check=False)
    out = dry.stdout + dry.stderr
    assert dry.returncode == 1, out  # what the deploy itself would return: refused
    assert site.server_head() == before and server.served_release() == "v1"
    assert "notes.0002_remove_note_text [pre-deploy]" in out
    assert any(
        line.strip().startswith("unsafe") and "RemoveField" in line for line in out.splitlines()
    ), out
    assert "why the old release breaks: drops column notes_note.text" in out
    assert "text" in _columns(site)


def test_healthz_stays_ready_while_post_deploy_migrations_wait(
    site, gunicorn_factory, load_factory
):
    """Between the reload and the post_migrate step the new release serves with its contract
    migration pending: readiness must not fail (a load balancer would take every backend out)."""
    site.commit_release("v2", expand_contract_release())
    git(site.server, "pull", "-q", "--ff-only")
    pre = site.manage("zerodeploy_migrations", "apply", "--stage", "pre")
    assert pre.stdout.splitlines() == ["applied notes.0002_note_text_nullable"]
    server = gunicorn_factory()
    status, _headers, body = server.get("/healthz/")
    assert status == 200 and json.loads(body)["status"] == "warn", body
    assert server.get(NOTES)[0] == 200
    # the contract migration runs while the new release serves reads and writes: no failure
    with load_factory(port=server.port, path=NOTES, clients=3, max_seconds=120) as load:
        with load.operation():
            post = site.manage("zerodeploy_migrations", "apply", "--stage", "post")
    assert post.stdout.splitlines() == ["applied notes.0003_remove_note_text"]
    assert "text" not in _columns(site)
    load.report.assert_covered()
    assert load.report.failed == 0, load.report.summary()
    assert set(load.report.markers) == {"v2"}
