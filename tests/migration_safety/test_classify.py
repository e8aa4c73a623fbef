"""Every operation classified by ``zerodeploy_migrations plan --json`` on a real SQLite file and
a real PostgreSQL database: one generated app per case, 0001 applied, 0002 pending."""

from __future__ import annotations

from collections.abc import Iterator

import django
import pytest

from tests.migration_apps.project import Case, CaseProject, pg_create, pg_drop, require_postgres

HAS_DB_DEFAULT = django.VERSION >= (5, 0)
CUSTOM_OP = '''
from django.db.migrations.operations.base import Operation


class TouchTable(Operation):
    """A custom operation: zerodeploy cannot know what it does."""

    reversible = True

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        pass

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass
'''

# (app, operations of 0002, expected classification, marker) -- "pre" stage unless marked.
CASES: list[tuple[str, str, str, str]] = [
    (
        "c_create_model",
        'migrations.CreateModel("Other", [("id", models.BigAutoField(primary_key=True))]),',
        "safe",
        "",
    ),
    ("c_delete_model", 'migrations.DeleteModel("Item"),', "unsafe", ""),
    (
        "c_add_nullable",
        'migrations.AddField("item", "note", models.TextField(null=True)),',
        "safe",
        "",
    ),
    (
        "c_add_not_null",
        'migrations.AddField("item", "note", models.TextField(default="x"), preserve_default=False),',
        "unsafe",
        "",
    ),
    (
        "c_add_default_only",
        'migrations.AddField("item", "size", models.IntegerField(default=3)),',
        "unsafe",
        "",
    ),
    (
        "c_add_m2m",
        'migrations.AddField("item", "links", models.ManyToManyField("self")),',
        "safe",
        "",
    ),
    ("c_remove_field", 'migrations.RemoveField("item", "nick"),', "unsafe", ""),
    ("c_rename_field", 'migrations.RenameField("item", "title", "name"),', "unsafe", ""),
    ("c_rename_keeps_column", 'migrations.RenameField("item", "legacy", "old"),', "safe", ""),
    ("c_rename_model", 'migrations.RenameModel("Item", "Thing"),', "unsafe", ""),
    ("c_alter_table", 'migrations.AlterModelTable("item", "items_v2"),', "unsafe", ""),
    (
        "c_alter_not_null",
        'migrations.AlterField("item", "nick", models.CharField(max_length=50, default="")),',
        "unsafe",
        "",
    ),
    (
        "c_alter_nullable",
        'migrations.AlterField("item", "title", models.CharField(max_length=200, null=True)),',
        "safe",
        "",
    ),
    (
        "c_alter_type",
        'migrations.AlterField("item", "title", models.IntegerField(default=0)),',
        "unsafe",
        "",
    ),
    (
        "c_alter_narrower",
        'migrations.AlterField("item", "title", models.CharField(max_length=20)),',
        "unsafe",
        "",
    ),
    (
        "c_alter_wider",
        'migrations.AlterField("item", "title", models.CharField(max_length=500)),',
        "safe",
        "",
    ),
    ("c_alter_to_text", 'migrations.AlterField("item", "title", models.TextField()),', "safe", ""),
    (
        "c_alter_to_bigint",
        'migrations.AlterField("item", "count", models.BigIntegerField(default=0)),',
        "safe",
        "",
    ),
    (
        "c_alter_unique",
        'migrations.AlterField("item", "title", models.CharField(max_length=200, unique=True)),',
        "unsafe",
        "",
    ),
    (
        "c_alter_column",
        'migrations.AlterField("item", "legacy", models.CharField(max_length=20, db_column="legacy2", null=True)),',
        "unsafe",
        "",
    ),
    (
        "c_alter_python_only",
        'migrations.AlterField("item", "title", models.CharField(max_length=200, help_text="h", blank=True)),',
        "safe",
        "",
    ),
    (
        "c_unique_constraint",
        'migrations.AddConstraint("item", models.UniqueConstraint(fields=["title"], name="c_uc_title")),',
        "unsafe",
        "",
    ),
    (
        "c_check_constraint",
        'migrations.AddConstraint("item", models.CheckConstraint(%s=models.Q(count__lte=9), name="c_cc_count")),',
        "unknown",
        "",
    ),
    (
        "c_remove_constraint",
        'migrations.RemoveConstraint("item", "c_remove_constraint_count_ck"),',
        "safe",
        "",
    ),
    (
        "c_unique_together",
        'migrations.AlterUniqueTogether("item", {("title", "count")}),',
        "unsafe",
        "",
    ),
    (
        "c_add_index",
        'migrations.AddIndex("item", models.Index(fields=["count"], name="c_ai_count")),',
        "safe",
        "",
    ),
    ("c_remove_index", 'migrations.RemoveIndex("item", "c_remove_index_tix"),', "safe", ""),
    (
        "c_model_options",
        'migrations.AlterModelOptions("item", {"ordering": ["title"]}),',
        "safe",
        "",
    ),
    (
        "c_run_sql",
        'migrations.RunSQL("UPDATE c_run_sql_item SET count = 1", migrations.RunSQL.noop),',
        "unknown",
        "",
    ),
    (
        "c_run_sql_noop",
        "migrations.RunSQL(migrations.RunSQL.noop, migrations.RunSQL.noop),",
        "safe",
        "",
    ),
    (
        "c_run_python",
        "migrations.RunPython(lambda apps, schema: None, migrations.RunPython.noop),",
        "unknown",
        "",
    ),
    ("c_custom", "TouchTable(),", "unknown", ""),
    (
        "c_state_only",
        'migrations.SeparateDatabaseAndState(state_operations=[migrations.RemoveField("item", "nick")]),',
        "safe",
        "",
    ),
    (
        "c_new_then_change",
        'migrations.AddField("item", "extra", models.TextField(null=True)),\nmigrations.RemoveField("item", "extra"),',
        "safe",
        "",
    ),
    # post-deploy (contract) migrations: judged against the NEW release, which serves first
    ("p_remove_nullable", 'migrations.RemoveField("item", "nick"),', "safe", '{"stage": "post"}'),
    (
        "p_remove_not_null",
        'migrations.RemoveField("item", "title"),',
        "unsafe",
        '{"stage": "post"}',
    ),
    (
        "p_alter_not_null",
        'migrations.AlterField("item", "nick", models.CharField(max_length=50, default="")),',
        "safe",
        '{"stage": "post"}',
    ),
    (
        "p_add_field",
        'migrations.AddField("item", "note", models.TextField(null=True)),',
        "unsafe",
        '{"stage": "post"}',
    ),
    ("p_delete_model", 'migrations.DeleteModel("Item"),', "safe", '{"stage": "post"}'),
]
if HAS_DB_DEFAULT:
    CASES.append(
        (
            "c_add_db_default",
            'migrations.AddField("item", "size", models.IntegerField(db_default=3)),',
            "safe",
            "",
        )
    )
PG_ONLY_CASES = [
    (
        "c_add_index_concurrently",
        'AddIndexConcurrently("item", models.Index(fields=["count"], name="c_aic_count")),',
        "safe",
        "",
    ),
]
BACKENDS = ["sqlite", "postgresql"]


def _cases(backend: str) -> list[Case]:
    check_kwarg = "condition" if django.VERSION >= (5, 1) else "check"
    rows = CASES + (PG_ONLY_CASES if backend == "postgresql" else [])
    made = []
    for app, operations, _expected, marker in rows:
        imports = ""
        if app == "c_custom":
            imports = CUSTOM_OP
        if app == "c_add_index_concurrently":
            imports = "from django.contrib.postgres.operations import AddIndexConcurrently"
        operations = operations.replace("%s=", f"{check_kwarg}=")
        made.append(
            Case(
                app,
                operations,
                marker,
                atomic=app != "c_add_index_concurrently",
                extra_imports=imports,
            )
        )
    return made


def _plan_project(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, dict, CaseProject]]:
    """One project per backend: every case's 0001 migrated, every 0002 pending, one plan."""
    db_name = ""
    if backend == "postgresql":
        require_postgres()
        db_name = pg_create()
    project = CaseProject(
        tmp_path_factory.mktemp(f"cases-{backend}"), backend, db_name, _cases(backend)
    )
    try:
        project.write_initial()
        project.migrate_initial()
        project.write_pending()
        code, data, _stderr = project.plan()
        yield backend, code, data, project
    finally:
        if db_name:
            pg_drop(db_name)


@pytest.fixture(scope="module")
def planned_sqlite(tmp_path_factory: pytest.TempPathFactory):
    yield from _plan_project("sqlite", tmp_path_factory)


@pytest.fixture(scope="module")
def planned_postgresql(tmp_path_factory: pytest.TempPathFactory):
    yield from _plan_project("postgresql", tmp_path_factory)


@pytest.fixture(params=BACKENDS)
def planned(request: pytest.FixtureRequest) -> tuple[str, int, dict, CaseProject]:
    return request.getfixturevalue(f"planned_{request.param}")


def _expected(backend: str) -> list[tuple[str, str, str]]:
    rows = CASES + (PG_ONLY_CASES if backend == "postgresql" else [])
    return [(app, expected, marker) for app, _ops, expected, marker in rows]


@pytest.mark.parametrize("app,expected,marker", _expected("sqlite"), ids=[r[0] for r in CASES])
def test_each_operation_is_classified(planned, app, expected, marker):
    _check_case(planned[2], app, expected, marker)


@pytest.mark.parametrize(
    "app,expected,marker", [(app, exp, marker) for app, _ops, exp, marker in PG_ONLY_CASES]
)
def test_postgresql_operations_are_classified(planned_postgresql, app, expected, marker):
    _check_case(planned_postgresql[2], app, expected, marker)


def _check_case(data: dict, app: str, expected: str, marker: str) -> None:
    by_app = {m["app"]: m for m in data["pending"]}
    assert app in by_app, data
    migration = by_app[app]
    assert migration["name"] == "0002_change"
    assert migration["stage"] == ("post" if marker else "pre")
    assert migration["classification"] == expected, migration
    for op in migration["operations"]:
        assert op["reason"], op
        assert op["operation"] and op["description"]
        if op["classification"] == "unsafe":
            assert "expand" in op["safe_sequence"] or "pre-deploy" in op["safe_sequence"], op


def test_plan_refuses_and_lists_only_unacknowledged_unsafe_operations(planned):
    backend, code, data, _project = planned
    assert code == 1
    unsafe_apps = {op["app"] for op in data["unsafe"]}
    expected = {app for app, exp, _m in _expected(backend) if exp == "unsafe"}
    assert unsafe_apps == expected
    assert data["errors"] == []
    for op in data["unsafe"]:
        assert {"app", "name", "operation", "classification", "reason", "safe_sequence"} <= set(op)
        assert op["classification"] == "unsafe"
    unknown_apps = {op["app"] for op in data["unknown"]}
    assert unknown_apps == {app for app, exp, _m in _expected(backend) if exp == "unknown"}
    assert "c_delete_model.0002_change" in data["message"]


def test_postgresql_hints_at_concurrent_indexes(planned):
    backend, _code, data, _project = planned
    add_index = next(m for m in data["pending"] if m["app"] == "c_add_index")["operations"][0]
    if backend == "postgresql":
        assert "AddIndexConcurrently" in add_index["reason"]
    else:
        assert "AddIndexConcurrently" not in add_index["reason"]


def test_allow_unsafe_acknowledges_everything(planned):
    _backend, _code, _data, project = planned
    code, data, _stderr = project.plan("--allow-unsafe")
    assert code == 0, data
    assert data["unsafe"] == [] and data["refused"] is False
    remove = next(m for m in data["pending"] if m["app"] == "c_remove_field")
    assert remove["acknowledged"] is True and remove["acknowledged_by"] == "flag"
    assert {op["app"] for op in data["acknowledged_unsafe"]} >= {"c_remove_field", "c_delete_model"}
    safe = next(m for m in data["pending"] if m["app"] == "c_create_model")
    assert safe["acknowledged_by"] == ""  # nothing to acknowledge


def test_human_output_and_refusal_message(planned):
    _backend, _code, _data, project = planned
    result = project.django("zerodeploy_migrations", "plan")
    assert result.returncode == 1
    assert "pre    UNSAFE   c_remove_field.0002_change" in result.stdout
    assert "post   safe     p_remove_nullable.0002_change" in result.stdout
    assert "warning: c_run_sql.0002_change: RunSQL" in result.stdout
    message = result.stderr
    unsafe_count = sum(1 for _app, exp, _m in _expected(planned[0]) if exp == "unsafe")
    assert (
        f"Unsafe migrations: {unsafe_count} operation(s) would break the release that is serving"
        in message
    )
    # app + migration, operation, why the old code breaks, the safe sequence, how to acknowledge
    assert (
        'c_remove_field.0002_change (pre-deploy), RemoveField "Remove field nick from item"'
        in message
    )
    assert "why the old release breaks: drops column c_remove_field_item.nick" in message
    assert "safe sequence: expand → deploy → contract" in message
    assert "--allow-unsafe-migrations" in message
    assert "p_remove_not_null.0002_change (post-deploy)" in message
    assert "why the new release breaks" in message
    assert "Traceback" not in message
