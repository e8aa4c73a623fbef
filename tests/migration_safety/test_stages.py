"""Pre-/post-deploy stages, acknowledgement markers, usage errors and PostgreSQL lock timeouts
of ``zerodeploy_migrations``, run as the pipeline runs it: a subprocess on a real database."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.migration_safety.apply import error_sqlstate, parse_duration_ms
from django_zerodeploy.migration_safety.column_types import compare_types
from django_zerodeploy.migration_safety.plan import PlanError, read_marker
from tests.migration_apps.project import PG, Case, CaseProject, pg_create, pg_drop, require_postgres

ADD_NULLABLE = 'migrations.AddField("item", "note", models.TextField(null=True)),'
REMOVE_NICK = 'migrations.RemoveField("item", "nick"),'


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    if request.param == "postgresql":
        require_postgres()
        name = pg_create()
        yield "postgresql", name
        pg_drop(name)
    else:
        yield "sqlite", ""


def _project(tmp_path, backend: tuple[str, str], apps: list[str]) -> CaseProject:
    project = CaseProject(
        tmp_path / "proj", backend[0], backend[1], [Case(app, "") for app in apps]
    )
    project.write_initial()
    project.migrate_initial()
    return project


# -- stages ------------------------------------------------------------------------------


def test_post_deploy_migrations_wait_for_the_post_stage(tmp_path, backend):
    """s_one: 0002 pre (expand), 0003 post (contract, RemoveField); s_two: 0002 pre."""
    project = _project(tmp_path, backend, ["s_one", "s_two"])
    project.write_migration(
        "s_one", "0002_expand", ADD_NULLABLE, dependencies='("s_one", "0001_initial")'
    )
    project.write_migration(
        "s_one",
        "0003_contract",
        REMOVE_NICK,
        dependencies='("s_one", "0002_expand")',
        marker='{"stage": "post"}',
    )
    project.write_migration(
        "s_two", "0002_expand", ADD_NULLABLE, dependencies='("s_two", "0001_initial")'
    )

    code, data, _ = project.plan()
    assert code == 0, data
    stages = {(m["app"], m["name"]): (m["stage"], m["classification"]) for m in data["pending"]}
    assert stages == {
        ("s_one", "0002_expand"): ("pre", "safe"),
        ("s_one", "0003_contract"): ("post", "safe"),
        ("s_two", "0002_expand"): ("pre", "safe"),
    }
    human = project.django("zerodeploy_migrations", "plan")
    assert "post   safe     s_one.0003_contract" in human.stdout
    assert "Post-deploy migrations apply after the reload" in human.stdout

    pre = project.django("zerodeploy_migrations", "apply", "--stage", "pre")
    assert pre.returncode == 0, pre.stderr
    assert pre.stdout.splitlines() == ["applied s_one.0002_expand", "applied s_two.0002_expand"]
    applied = project.applied()
    assert ("s_one", "0002_expand") in applied and ("s_one", "0003_contract") not in applied

    again = project.django("zerodeploy_migrations", "apply", "--stage", "pre")
    assert again.returncode == 0 and "No pending pre-deploy migrations." in again.stdout

    post = project.django("zerodeploy_migrations", "apply", "--stage", "post")
    assert post.returncode == 0, post.stderr
    assert post.stdout.splitlines() == ["applied s_one.0003_contract"]
    assert ("s_one", "0003_contract") in project.applied()
    code, data, _ = project.plan()
    assert code == 0 and data["pending"] == []


def test_pre_deploy_migration_depending_on_a_post_deploy_one_is_refused(tmp_path):
    project = _project(tmp_path, ("sqlite", ""), ["d_post", "d_pre"])
    project.write_migration(
        "d_post",
        "0002_contract",
        REMOVE_NICK,
        dependencies='("d_post", "0001_initial")',
        marker='{"stage": "post"}',
    )
    project.write_migration(
        "d_pre",
        "0002_needs_contract",
        ADD_NULLABLE,
        dependencies='("d_pre", "0001_initial"), ("d_post", "0002_contract")',
    )
    code, data, _ = project.plan()
    assert code == 1
    assert data["unsafe"] == []
    assert len(data["errors"]) == 1
    error = data["errors"][0]
    assert (
        "d_pre.0002_needs_contract is pre-deploy but depends on post-deploy migration(s) d_post.0002_contract"
        in error
    )
    assert error in data["message"]

    human = project.django("zerodeploy_migrations", "plan")
    assert (
        human.returncode == 1 and "Refused: d_pre.0002_needs_contract is pre-deploy" in human.stderr
    )

    pre = project.django("zerodeploy_migrations", "apply", "--stage", "pre")
    assert pre.returncode == 1
    assert "Not migrating" in pre.stderr and "Traceback" not in pre.stderr
    assert ("d_post", "0002_contract") not in project.applied()


# -- acknowledgement and usage errors ------------------------------------------------------


def test_marker_acknowledges_with_a_reason(tmp_path):
    project = _project(tmp_path, ("sqlite", ""), ["m_ack", "m_plain"])
    project.write_migration(
        "m_ack",
        "0002_drop",
        REMOVE_NICK,
        dependencies='("m_ack", "0001_initial")',
        marker='{"allow_unsafe": "nick unused since v41"}',
    )
    project.write_migration(
        "m_plain", "0002_drop", REMOVE_NICK, dependencies='("m_plain", "0001_initial")'
    )
    code, data, _ = project.plan()
    assert code == 1
    assert [(op["app"], op["operation"]) for op in data["unsafe"]] == [("m_plain", "RemoveField")]
    ack = next(m for m in data["pending"] if m["app"] == "m_ack")
    assert ack["acknowledged"] is True
    assert ack["acknowledged_by"] == "marker"
    assert ack["acknowledgement_reason"] == "nick unused since v41"
    assert [op["app"] for op in data["acknowledged_unsafe"]] == ["m_ack"]


@pytest.mark.parametrize(
    "marker,needle",
    [
        ('{"stage": "later"}', "must be 'pre' or 'post'"),
        ('{"stag": "post"}', "unknown zerodeploy key(s) stag"),
        ('"post"', "must be a dict"),
    ],
)
def test_bad_marker_is_a_usage_error(tmp_path, marker, needle):
    project = _project(tmp_path, ("sqlite", ""), ["b_bad"])
    project.write_migration(
        "b_bad", "0002_x", ADD_NULLABLE, dependencies='("b_bad", "0001_initial")', marker=marker
    )
    code, data, stderr = project.plan()
    assert code == 2
    assert needle in data["errors"][0] and "b_bad.0002_x" in data["errors"][0]
    assert "Traceback" not in stderr


def test_bad_timeout_is_a_usage_error(tmp_path):
    project = _project(tmp_path, ("sqlite", ""), ["t_bad"])
    result = project.django(
        "zerodeploy_migrations", "apply", "--stage", "pre", "--lock-timeout", "soon"
    )
    assert result.returncode == 2
    assert "lock timeout must be a duration" in result.stderr and "Traceback" not in result.stderr
    result = project.django("zerodeploy_migrations", "apply", "--stage", "pre", "--retries", "0")
    assert result.returncode == 2 and "at least 1" in result.stderr


def test_foreign_post_deploy_markers_are_honoured():
    class Stage:  # the shape of django-syzygy's Stage.POST_DEPLOY (a str enum)
        value = "post_deploy"

    class SyzygyMigration:
        app_label, name = "a", "0002"
        stage = Stage()

    class SafeMigrateMigration:
        app_label, name = "a", "0003"
        safe = "after_deploy"

    class Plain:
        app_label, name = "a", "0004"

    assert read_marker(SyzygyMigration()).stage == "post"
    assert read_marker(SafeMigrateMigration()).stage == "post"
    assert read_marker(Plain()).stage == "pre"
    Plain.zerodeploy = {"allow_unsafe": ""}
    with pytest.raises(PlanError, match="non-empty reason"):
        read_marker(Plain())


def test_durations():
    assert parse_duration_ms("5s", "x") == 5000
    assert parse_duration_ms("500ms", "x") == 500
    assert parse_duration_ms("1min", "x") == 60_000
    assert parse_duration_ms(5, "x") == 5000  # numbers are seconds, never PostgreSQL's bare ms
    assert parse_duration_ms("2", "x") == 2000
    assert parse_duration_ms(0, "x") == 0
    for bad in ("-1s", "5 parsecs", True, -3):
        with pytest.raises(CommandFailure):
            parse_duration_ms(bad, "x")


def test_type_comparisons():
    assert compare_types("varchar(100)", "varchar(200)") == "wider"
    assert compare_types("varchar(200)", "varchar(100)") == "narrower"
    assert compare_types("varchar(200)", "text") == "wider"
    assert compare_types("integer", "bigint") == "wider"
    assert compare_types("integer unsigned", "bigint unsigned") == "wider"
    assert compare_types("bigint", "smallint") == "narrower"
    assert compare_types("numeric(10, 2)", "numeric(12, 2)") == "wider"
    assert compare_types("numeric(10, 2)", "numeric(10, 4)") == "incompatible"
    assert compare_types("varchar(20)", "integer") == "incompatible"


# -- PostgreSQL lock timeouts --------------------------------------------------------------


def _pg_project(tmp_path) -> tuple[CaseProject, str]:
    require_postgres()
    name = pg_create()
    project = _project(tmp_path, ("postgresql", name), ["l_lock"])
    project.write_migration(
        "l_lock", "0002_expand", ADD_NULLABLE, dependencies='("l_lock", "0001_initial")'
    )
    return project, name


class TableReader:
    """A transaction that has read the table and stays open: it holds ACCESS SHARE, which
    lets other readers and writers through but blocks ALTER TABLE (ACCESS EXCLUSIVE)."""

    def __init__(self, db_name: str, table: str) -> None:
        import psycopg
        from psycopg import sql

        self.conn = psycopg.connect(dbname=db_name, **PG)
        # BEGIN is implicit: the lock stays until release()
        self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def _waiting_on(db_name: str, table: str) -> int:
    """How many sessions wait for a lock on ``table``."""
    import psycopg

    with psycopg.connect(dbname=db_name, autocommit=True, **PG) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = %s AND NOT l.granted",
            (table,),
        ).fetchone()
        return int(row[0])


def test_lock_timeout_fails_fast_and_readers_keep_flowing(tmp_path):
    project, name = _pg_project(tmp_path)
    try:
        _lock_timeout_scenario(project, name)
    finally:
        pg_drop(name)


def _lock_timeout_scenario(project: CaseProject, name: str) -> None:
    holder = TableReader(name, "l_lock_item")
    readers: list[str] = []
    stop = threading.Event()

    def read_and_write() -> None:  # what the serving release does meanwhile
        import psycopg

        while not stop.is_set():
            try:
                with psycopg.connect(dbname=name, autocommit=True, **PG) as conn:
                    conn.execute("SET statement_timeout = '20s'")
                    conn.execute("INSERT INTO l_lock_item (title, count) VALUES ('x', 1)")
                    conn.execute("SELECT count(*) FROM l_lock_item").fetchone()
                readers.append("ok")
            except psycopg.Error as exc:
                readers.append(type(exc).__name__)
            time.sleep(0.05)

    thread = threading.Thread(target=read_and_write, daemon=True)
    thread.start()
    try:
        result = project.django(
            "zerodeploy_migrations",
            "apply",
            "--stage",
            "pre",
            "--lock-timeout",
            "1s",
            "--retries",
            "2",
        )
    finally:
        stop.set()
        thread.join(30)
        holder.release()
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "l_lock.0002_expand hit lock_timeout (1000 ms), attempt 1 of 2; retrying in 1 s"
        in result.stderr
    )
    assert "could not take its lock within lock_timeout (1000 ms) in 2 attempt(s)" in result.stderr
    assert "Nothing of it was applied" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.strip() == ""
    assert ("l_lock", "0002_expand") not in project.applied()
    # the serving side never failed: queued behind the ALTER at most for the lock timeout
    assert readers and set(readers) == {"ok"}, readers
    # with the long transaction gone, the same command applies it
    again = project.django(
        "zerodeploy_migrations", "apply", "--stage", "pre", "--lock-timeout", "1s"
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["applied l_lock.0002_expand"]


def test_lock_timeout_is_retried_until_the_lock_is_free(tmp_path):
    project, name = _pg_project(tmp_path)
    holder = TableReader(name, "l_lock_item")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django",
            "zerodeploy_migrations",
            "apply",
            "--stage",
            "pre",
            "--lock-timeout",
            "1s",
            "--retries",
            "6",
        ],
        cwd=project.root,
        env=project.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # first attempt waits for the lock, then gives up; release during the backoff
        assert _poll(lambda: _waiting_on(name, "l_lock_item") > 0, 60), "the ALTER never queued"
        assert _poll(lambda: _waiting_on(name, "l_lock_item") == 0, 60), "the ALTER never timed out"
        holder.release()
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert "attempt 1 of 6; retrying" in stderr
        assert stdout.splitlines() == ["applied l_lock.0002_expand"]
        assert ("l_lock", "0002_expand") in project.applied()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pg_drop(name)


def test_statement_timeout_cancels_a_long_migration(tmp_path):
    project, name = _pg_project(tmp_path)
    project.write_migration(
        "l_lock",
        "0003_slow",
        "migrations.RunSQL('SELECT pg_sleep(5)', migrations.RunSQL.noop),",
        dependencies='("l_lock", "0002_expand")',
    )
    try:
        result = project.django(
            "zerodeploy_migrations", "apply", "--stage", "pre", "--statement-timeout", "300ms"
        )
        assert result.returncode == 1
        assert result.stdout.splitlines() == ["applied l_lock.0002_expand"]
        assert (
            "l_lock.0003_slow ran longer than statement_timeout and was cancelled" in result.stderr
        )
        assert "Applied before the failure: l_lock.0002_expand." in result.stderr
        assert ("l_lock", "0003_slow") not in project.applied()
    finally:
        pg_drop(name)


def test_sqlstate_is_found_through_django_wrappers():
    class Inner(Exception):
        sqlstate = "55P03"

    try:
        try:
            raise Inner("lock")
        except Inner as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        assert error_sqlstate(outer) == "55P03"
    assert error_sqlstate(ValueError("x")) is None


def _poll(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
