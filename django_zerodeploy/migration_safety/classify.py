"""Classify one migration operation: can it run while the *other* release serves?

A pre-deploy migration runs while the previous release still serves, so the question is
"does the old code still work against the new schema?". A post-deploy migration runs after
the reload, while the new release already serves, so the question becomes "does the new
code work against the schema *before* this migration?". The rules read the operation and
the model state just before it (Django's ``ProjectState``), never file names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.db.migrations import operations as ops
from django.db.migrations.state import ProjectState

from .verdict import (
    EXPAND_CONTRACT,
    PRE,
    RANK,
    SAFE,
    UNKNOWN,
    UNSAFE,
    Verdict,
    verdict,
)


@dataclass
class RuleContext:
    """What the rules may look at besides the operation itself."""

    app_label: str
    stage: str  # PRE or POST
    state: ProjectState  # the project state just before the operation
    connection: Any  # the database connection (its vendor and column types)
    new_models: set[tuple[str, str]] = field(default_factory=set)  # created earlier in this plan
    baseline: ProjectState | None = None  # the applied state: what the serving (old) release knows

    def model_state(self, model_name: str) -> Any | None:
        return self.state.models.get((self.app_label, model_name.lower()))

    def old_field(self, model_name: str, name: str) -> models.Field | None:
        model = self.model_state(model_name)
        return model.fields.get(name) if model is not None else None

    def known_field(self, model_name: str, name: str) -> models.Field | None:
        """The field as the old release knows it (applied state), else as it is now."""
        if self.baseline is not None:
            model = self.baseline.models.get((self.app_label, model_name.lower()))
            if model is not None and name in model.fields:
                return model.fields[name]
        return self.old_field(model_name, name)

    def field_is_new(self, model_name: str, name: str) -> bool:
        """Added earlier in this plan: the old release has never used it."""
        if self.baseline is None:
            return False
        model = self.baseline.models.get((self.app_label, model_name.lower()))
        return (
            model is not None
            and name not in model.fields
            and self.old_field(model_name, name) is not None
        )

    def table(self, model_name: str) -> str:
        model = self.model_state(model_name)
        explicit = model.options.get("db_table") if model is not None else None
        return explicit or f"{self.app_label}_{model_name.lower()}"

    def is_new(self, model_name: str) -> bool:
        return (self.app_label, model_name.lower()) in self.new_models


def _has_db_default(f: models.Field) -> bool:
    return getattr(f, "db_default", models.NOT_PROVIDED) is not models.NOT_PROVIDED


def _column(name: str, f: models.Field) -> str:
    return f.db_column or (f"{name}_id" if f.is_relation and f.many_to_one else name)


# -- pre-deploy rules: the OLD release serves while the migration runs --------------------


def _pre_create_model(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(
        op, SAFE, f"creates table {ctx.table(op.name)}, which the old release never queries."
    )


def _pre_delete_model(op: Any, ctx: RuleContext) -> Verdict:
    table = ctx.table(op.name)
    return verdict(
        op,
        UNSAFE,
        f"drops table {table} while the old release's model {op.name} still queries it: every "
        "request that touches it fails until the reload.",
        f"{EXPAND_CONTRACT}: first deploy code that no longer uses {op.name}, then drop the "
        "table in a post-deploy migration (zerodeploy = {'stage': 'post'}) or a later release.",
    )


def _pre_add_field(op: Any, ctx: RuleContext) -> Verdict:
    f = op.field
    table = ctx.table(op.model_name)
    if f.many_to_many:
        return verdict(op, SAFE, "creates a new join table, which the old release never queries.")
    if f.null:
        return verdict(op, SAFE, f"adds a nullable column to {table}; the old release ignores it.")
    if _has_db_default(f):
        return verdict(
            op,
            SAFE,
            f"adds a column with a database default to {table}; the old release's "
            "INSERTs get the default.",
        )
    return verdict(
        op,
        UNSAFE,
        f"adds NOT NULL column {_column(op.name, f)} to {table} without a database default: the "
        "old release's INSERTs do not name the column and fail with a NOT NULL violation "
        "(Django's default= lives in Python only, not in the database).",
        f"{EXPAND_CONTRACT}: add the field with null=True (or db_default=..., Django 5.0+), "
        "deploy code that writes it, backfill, then make it NOT NULL in a post-deploy migration.",
    )


def _pre_remove_field(op: Any, ctx: RuleContext) -> Verdict:
    old = ctx.old_field(op.model_name, op.name)
    table = ctx.table(op.model_name)
    if old is not None and old.many_to_many:
        what = f"drops the join table of {op.model_name}.{op.name}"
    else:
        column = _column(op.name, old) if old is not None else op.name
        what = f"drops column {table}.{column}"
    return verdict(
        op,
        UNSAFE,
        f"{what} while the old release's model still has the field {op.name!r}: every query "
        f"that loads {op.model_name} selects it and fails until the reload.",
        f"{EXPAND_CONTRACT}: make the field nullable (AlterField null=True) and stop using it in "
        "the code you deploy, then remove it in a post-deploy migration "
        "(zerodeploy = {'stage': 'post'}) or in a later release.",
    )


def _pre_rename_field(op: Any, ctx: RuleContext) -> Verdict:
    old = ctx.old_field(op.model_name, op.old_name)
    if old is not None and old.db_column:
        return verdict(
            op, SAFE, f"the column keeps its name ({old.db_column}); only Python names change."
        )
    return verdict(
        op,
        UNSAFE,
        f"renames column {op.old_name} of {ctx.table(op.model_name)} to {op.new_name}: the old "
        f"release still queries {op.old_name} and fails until the reload.",
        f"{EXPAND_CONTRACT}: keep the column (RenameField plus db_column={op.old_name!r} changes "
        "no SQL), or add the new field, write both, backfill, switch reads, and remove the old "
        "one in a post-deploy migration.",
    )


def _pre_rename_model(op: Any, ctx: RuleContext) -> Verdict:
    old_table = ctx.table(op.old_name)
    explicit = (ctx.model_state(op.old_name) or _Empty).options.get("db_table")
    if explicit:
        return verdict(op, SAFE, f"Meta.db_table keeps the table name ({old_table}); no SQL runs.")
    return verdict(
        op,
        UNSAFE,
        f"renames table {old_table} to {ctx.app_label}_{op.new_name.lower()}: the old release "
        f"still queries {old_table} and fails until the reload.",
        f"{EXPAND_CONTRACT}: set Meta.db_table = {old_table!r} on the renamed model so no table "
        "changes, or create the new table, copy, switch, and drop the old one post-deploy.",
    )


def _pre_alter_model_table(op: Any, ctx: RuleContext) -> Verdict:
    old_table = ctx.table(op.name)
    new_table = op.table or f"{ctx.app_label}_{op.name.lower()}"
    if old_table == new_table:
        return verdict(op, SAFE, "the table name does not change.")
    return verdict(
        op,
        UNSAFE,
        f"renames table {old_table} to {new_table}: the old release still queries {old_table}.",
        f"{EXPAND_CONTRACT}: keep the table name in this release; rename it only when no "
        "release uses the old name (e.g. behind a view), in a later deploy.",
    )


def _pre_alter_field(op: Any, ctx: RuleContext) -> Verdict:
    old = ctx.known_field(op.model_name, op.name)  # compare with what the old release writes
    new = op.field
    if old is None:
        return verdict(op, UNKNOWN, "the field is not in the model state before this operation.")
    table = ctx.table(op.model_name)
    old_col = _column(op.name, old)
    unsafe = _alter_breaks_queries(op, old, new, table)
    if unsafe:
        return unsafe
    change = _type_change(old, new, ctx.connection)
    if change and change[2] != "wider":
        old_type, new_type, _ = change
        return verdict(
            op,
            UNSAFE,
            f"changes {table}.{old_col} from {old_type} to {new_type}: values the old release "
            "writes (or reads back) may not fit the new type, and the ALTER rewrites the table.",
            f"{EXPAND_CONTRACT}: add a new column of the new type, write both, backfill, switch "
            "reads, then drop the old column in a post-deploy migration.",
        )
    unsafe = _alter_breaks_writes(op, old, new, table, old_col)
    if unsafe:
        return unsafe
    if new.null and not old.null:
        return verdict(
            op, SAFE, f"allows NULL in {table}.{old_col}; the old release never writes NULL there."
        )
    if change:
        return verdict(
            op,
            SAFE,
            f"widens {table}.{old_col} from {change[0]} to {change[1]}; old values still fit "
            "(on PostgreSQL the ALTER may rewrite the table under a lock: see lock_timeout).",
        )
    return verdict(
        op,
        SAFE,
        "changes nothing the old release can notice (no narrower type, NOT NULL or unique).",
    )


def _alter_breaks_queries(op: Any, old: Any, new: Any, table: str) -> Verdict | None:
    """A renamed column or a new primary key breaks the queries the old release sends."""
    old_col, new_col = _column(op.name, old), _column(op.name, new)
    if old_col != new_col:
        return verdict(
            op,
            UNSAFE,
            f"renames column {table}.{old_col} to {new_col}: the old release still "
            f"queries {old_col}.",
            f"{EXPAND_CONTRACT}: keep db_column={old_col!r} in this release.",
        )
    if old.primary_key != new.primary_key:
        return verdict(
            op,
            UNSAFE,
            f"changes the primary key of {table}, which the old release relies on.",
            f"{EXPAND_CONTRACT}: add the new key column beside the old one first.",
        )
    return None


def _alter_breaks_writes(op: Any, old: Any, new: Any, table: str, old_col: str) -> Verdict | None:
    """NOT NULL, a unique constraint or a dropped default make the old release's writes fail."""
    if old.null and not new.null:
        return verdict(
            op,
            UNSAFE,
            f"makes {table}.{old_col} NOT NULL while the old release may still write NULL into "
            "it (its model allows it); existing NULL rows also make the ALTER fail.",
            f"{EXPAND_CONTRACT}: deploy code that always writes a value, backfill the NULL rows, "
            "then set NOT NULL in a post-deploy migration (zerodeploy = {'stage': 'post'}).",
        )
    if new.unique and not old.unique and not new.primary_key:
        return verdict(
            op,
            UNSAFE,
            f"adds a unique constraint on {table}.{old_col}: the old release may insert duplicates "
            "(IntegrityError), and existing duplicates make the migration fail.",
            f"{EXPAND_CONTRACT}: deploy code that never writes duplicates, clean the data, then "
            "add the constraint in a post-deploy migration.",
        )
    if _has_db_default(old) and not _has_db_default(new) and not new.null:
        return verdict(
            op,
            UNSAFE,
            f"drops the database default of NOT NULL column {table}.{old_col}, which the "
            "old release's INSERTs rely on.",
            f"{EXPAND_CONTRACT}: drop the default post-deploy.",
        )
    return None


def _pre_together(op: Any, ctx: RuleContext) -> Verdict:
    before = _together(ctx, op.name, "unique_together")
    added = _normalise_together(op.option_value) - before
    if isinstance(op, ops.AlterUniqueTogether) and added:
        names = ", ".join("(" + ", ".join(t) + ")" for t in sorted(added))
        return verdict(
            op,
            UNSAFE,
            f"adds unique_together {names} on {ctx.table(op.name)}: the old release may insert "
            "duplicates (IntegrityError), and existing duplicates make the migration fail.",
            f"{EXPAND_CONTRACT}: deploy code that never writes duplicates, clean the data, then "
            "add the constraint in a post-deploy migration.",
        )
    return verdict(
        op, SAFE, "only removes or reorders constraints/indexes; the old release is unaffected."
    )


def _pre_add_constraint(op: Any, ctx: RuleContext) -> Verdict:
    constraint = op.constraint
    table = ctx.table(op.model_name)
    if ctx.is_new(op.model_name):
        return _new_modelverdict(op, ctx)
    kind = type(constraint).__name__
    if isinstance(constraint, models.UniqueConstraint) or kind == "ExclusionConstraint":
        return verdict(
            op,
            UNSAFE,
            f"adds {kind} {constraint.name} on {table}: the old release may insert rows that "
            "violate it (IntegrityError), and existing violations make the migration fail.",
            f"{EXPAND_CONTRACT}: deploy code that never writes violating rows, clean the data, "
            "then add the constraint in a post-deploy migration.",
        )
    return verdict(
        op,
        UNKNOWN,
        f"adds {kind} {constraint.name} on {table}: safe only if the old release never writes "
        "rows that violate it.",
        "If the old code can violate it, add it in a post-deploy migration.",
    )


def _pre_order_wrt(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(
        op,
        UNSAFE,
        f"adds or drops the NOT NULL _order column of {ctx.table(op.name)}, which the old "
        "release's INSERTs and queries depend on.",
        f"{EXPAND_CONTRACT}: change order_with_respect_to only in a release deployed with a "
        "maintenance window, or model the order as a nullable field first.",
    )


# -- post-deploy rules: the NEW release serves before the migration runs -------------------


def _post_adds(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(
        op,
        UNSAFE,
        "a post-deploy migration runs after the reload, but the new release already uses what "
        "this operation creates and fails until it runs.",
        "Put additive operations (CreateModel, AddField, ...) in a pre-deploy migration.",
    )


def _post_removes_model(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(op, SAFE, "contract phase: the new release no longer uses this table.")


def _post_remove_field(op: Any, ctx: RuleContext) -> Verdict:
    old = ctx.old_field(op.model_name, op.name)
    if old is None or old.many_to_many or old.null or _has_db_default(old):
        return verdict(op, SAFE, "contract phase: neither release uses the column any more.")
    table = ctx.table(op.model_name)
    return verdict(
        op,
        UNSAFE,
        f"{table}.{_column(op.name, old)} is NOT NULL without a database default: between the "
        "reload and this post-deploy migration the new release's INSERTs omit it and fail.",
        f"{EXPAND_CONTRACT}: make the field nullable (AlterField null=True) in a pre-deploy "
        "migration of this release; keep the RemoveField post-deploy.",
    )


def _post_renames(op: Any, ctx: RuleContext) -> Verdict:
    pre = _PRE_RULES[type(op)](op, ctx)
    if pre.classification == SAFE:
        return pre
    return verdict(
        op,
        UNSAFE,
        "a rename breaks whichever release uses the other name: before this post-deploy "
        "migration the new release queries a name that does not exist yet.",
        pre.safe_sequence,
    )


def _post_alter_field(op: Any, ctx: RuleContext) -> Verdict:
    old = ctx.old_field(op.model_name, op.name)
    new = op.field
    if old is None:
        return verdict(op, UNKNOWN, "the field is not in the model state before this operation.")
    table = ctx.table(op.model_name)
    column = _column(op.name, old)
    if column != _column(op.name, new) or old.primary_key != new.primary_key:
        return _post_renames_field(op, table, column)
    change = _type_change(old, new, ctx.connection)
    if change and change[2] != "narrower":
        return verdict(
            op,
            UNSAFE,
            f"changes {table}.{column} from {change[0]} to {change[1]} after the reload: until then "
            "the new release writes values the old type may not hold.",
            "Run type changes that widen in a pre-deploy migration; split incompatible ones "
            f"({EXPAND_CONTRACT}).",
        )
    if new.null and not old.null:
        return verdict(
            op,
            UNSAFE,
            f"allows NULL in {table}.{column} only after the reload: until then the new release "
            "may write NULL and fail.",
            "Relax NOT NULL in a pre-deploy migration.",
        )
    return verdict(op, SAFE, "contract phase: the new release already respects the tighter column.")


def _post_renames_field(op: Any, table: str, column: str) -> Verdict:
    return verdict(
        op,
        UNSAFE,
        f"changes column {table}.{column} after the reload: until then the new release "
        "queries a column that does not exist yet.",
        f"{EXPAND_CONTRACT}: keep the column name.",
    )


def _post_safe(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(
        op, SAFE, "contract phase: only tightens or removes what the new release no longer needs."
    )


# -- either stage --------------------------------------------------------------------------


def _index(op: Any, ctx: RuleContext) -> Verdict:
    hint = ""
    if ctx.connection.vendor == "postgresql" and type(op).__name__ == "AddIndex":
        hint = " On PostgreSQL CREATE INDEX blocks writes while it builds: use AddIndexConcurrently for big tables."
    return verdict(
        op, SAFE, "indexes change speed, not results; both releases keep working." + hint
    )


def _state_only(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(
        op, SAFE, "changes Python-side options only; no SQL the serving release can notice."
    )


def _remove_constraint(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(op, SAFE, "removing a constraint only relaxes what the database accepts.")


def _run_sql(op: Any, ctx: RuleContext) -> Verdict:
    if op.sql in ("", None, [], ()) or op.sql == ops.RunSQL.noop:
        return verdict(op, SAFE, "runs no SQL.")
    return verdict(
        op,
        UNKNOWN,
        "runs custom SQL that zerodeploy cannot read: safe only if the serving release keeps "
        "working with its result (check it with sqlmigrate).",
        "If it drops, renames or restricts something the old code uses, split it "
        f"({EXPAND_CONTRACT}) or mark the migration post-deploy.",
    )


def _run_python(op: Any, ctx: RuleContext) -> Verdict:
    if op.code is ops.RunPython.noop:
        return verdict(op, SAFE, "runs no code.")
    return verdict(
        op,
        UNKNOWN,
        "runs Python code (a data migration) while the other release serves: safe only if it "
        "changes no data that release depends on; keep it short, it runs inside the migrate step.",
        "Backfills belong between expand and contract; big ones in batches outside the deploy.",
    )


def _new_modelverdict(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(
        op,
        SAFE,
        "acts on a table created earlier in this same plan; the old release never uses it.",
    )


_PRE_RULES: dict[type, Callable[[Any, RuleContext], Verdict]] = {
    ops.CreateModel: _pre_create_model,
    ops.DeleteModel: _pre_delete_model,
    ops.AddField: _pre_add_field,
    ops.RemoveField: _pre_remove_field,
    ops.RenameField: _pre_rename_field,
    ops.AlterField: _pre_alter_field,
    ops.RenameModel: _pre_rename_model,
    ops.AlterModelTable: _pre_alter_model_table,
    ops.AlterUniqueTogether: _pre_together,
    ops.AlterOrderWithRespectTo: _pre_order_wrt,
    ops.AddConstraint: _pre_add_constraint,
    ops.RemoveConstraint: _remove_constraint,
    ops.AddIndex: _index,
    ops.RemoveIndex: _index,
    ops.RenameIndex: _index,
    ops.AlterModelOptions: _state_only,
    ops.AlterModelManagers: _state_only,
    ops.RunSQL: _run_sql,
    ops.RunPython: _run_python,
}
_POST_RULES: dict[type, Callable[[Any, RuleContext], Verdict]] = {
    **_PRE_RULES,
    ops.CreateModel: _post_adds,
    ops.AddField: _post_adds,
    ops.DeleteModel: _post_removes_model,
    ops.RemoveField: _post_remove_field,
    ops.RenameField: _post_renames,
    ops.RenameModel: _post_renames,
    ops.AlterModelTable: _post_renames,
    ops.AlterField: _post_alter_field,
    ops.AlterUniqueTogether: _post_safe,
    ops.AddConstraint: _post_safe,
    ops.AlterOrderWithRespectTo: _pre_order_wrt,
}


def _optional_rules() -> None:
    """Operations that exist only in some Django versions or need psycopg."""
    names = {
        "AlterModelTableComment": _state_only,
        "AlterConstraint": _state_only,
        "AlterIndexTogether": _pre_together,
    }
    for name, rule in names.items():
        op_class = getattr(ops, name, None)
        if op_class is not None:
            _PRE_RULES[op_class] = _POST_RULES[op_class] = rule
    try:
        from django.contrib.postgres import operations as pg
    except ImportError:  # psycopg missing: these operations cannot appear in a plan anyway
        return
    for name in ("AddIndexConcurrently", "RemoveIndexConcurrently"):
        _PRE_RULES[getattr(pg, name)] = _POST_RULES[getattr(pg, name)] = _index
    for name in ("ValidateConstraint", "CreateCollation"):
        if hasattr(pg, name):
            _PRE_RULES[getattr(pg, name)] = _POST_RULES[getattr(pg, name)] = _state_only
    _PRE_RULES[pg.AddConstraintNotValid] = _pre_add_constraint
    _POST_RULES[pg.AddConstraintNotValid] = _post_safe
    extension = pg.CreateExtension
    _PRE_RULES[extension] = _POST_RULES[extension] = _extension


def _extension(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(op, SAFE, "installs a PostgreSQL extension; existing queries are unaffected.")


_optional_rules()

_TOUCHES_EXISTING_MODEL = (
    ops.AddField,
    ops.RemoveField,
    ops.AlterField,
    ops.RenameField,
    ops.AddConstraint,
    ops.AlterUniqueTogether,
    ops.AlterOrderWithRespectTo,
    ops.DeleteModel,
    ops.AlterModelTable,
    ops.RenameModel,
)


def classify(op: Any, ctx: RuleContext) -> Verdict:
    """The verdict for ``op`` given the model state before it (``ctx.state``)."""
    if isinstance(op, ops.SeparateDatabaseAndState):
        return _separate(op, ctx)
    rules = _PRE_RULES if ctx.stage == PRE else _POST_RULES
    rule = _rule_for(op, rules)
    if rule is None:
        return verdict(
            op,
            UNKNOWN,
            f"custom operation {type(op).__module__}.{type(op).__name__}: zerodeploy cannot tell "
            "what it does to the schema the serving release uses.",
            "Review its SQL (sqlmigrate); if it breaks the serving release, split it "
            f"({EXPAND_CONTRACT}) or mark the migration post-deploy.",
        )
    if ctx.stage == PRE and isinstance(op, _TOUCHES_EXISTING_MODEL):
        model_name = (
            getattr(op, "model_name", None)
            or getattr(op, "name", None)
            or getattr(op, "old_name", "")
        )
        if model_name and ctx.is_new(model_name):
            return _new_modelverdict(op, ctx)
    if ctx.stage == PRE and isinstance(op, (ops.RemoveField, ops.AlterField, ops.RenameField)):
        name = op.old_name if isinstance(op, ops.RenameField) else op.name
        if ctx.field_is_new(op.model_name, name):
            return verdict(
                op,
                SAFE,
                f"acts on field {name!r}, added earlier in this same plan; the old release never uses it.",
            )
    return rule(op, ctx)


def _rule_for(
    op: Any, rules: dict[type, Callable[[Any, RuleContext], Verdict]]
) -> Callable[[Any, RuleContext], Verdict] | None:
    """Exact class first: a subclass may override database_forwards, so it is 'unknown'."""
    return rules.get(type(op))


def _separate(op: Any, ctx: RuleContext) -> Verdict:
    """Only the database half runs SQL; classify those operations on a copy of the state."""
    if not op.database_operations:
        return verdict(op, SAFE, "changes Django's migration state only; no SQL runs.")
    state = ctx.state.clone()
    gravest: Verdict | None = None
    for inner in op.database_operations:
        sub = classify(
            inner,
            RuleContext(
                ctx.app_label, ctx.stage, state, ctx.connection, ctx.new_models, ctx.baseline
            ),
        )
        if gravest is None or RANK[sub.classification] > RANK[gravest.classification]:
            gravest = sub
        inner.state_forwards(ctx.app_label, state)
    assert gravest is not None
    return verdict(
        op,
        gravest.classification,
        f"database operation {gravest.operation}: {gravest.reason}",
        gravest.safe_sequence,
    )


# -- helpers -------------------------------------------------------------------------------


class _EmptyModelState:
    options: dict[str, Any] = {}


_Empty = _EmptyModelState()


def _together(ctx: RuleContext, model_name: str, option: str) -> set[tuple[str, ...]]:
    model = ctx.model_state(model_name)
    return _normalise_together(model.options.get(option) if model is not None else None)


def _normalise_together(value: Any) -> set[tuple[str, ...]]:
    if not value:
        return set()
    items = list(value)
    if items and isinstance(items[0], str):
        items = [items]
    return {tuple(item) for item in items}


def _db_type(f: models.Field, connection: Any) -> str | None:
    """The column type of a state field, without rendering models (relations: their target)."""
    if f.is_relation:
        remote = f.remote_field
        target = getattr(remote, "model", None)
        label = (
            target
            if isinstance(target, str)
            else getattr(getattr(target, "_meta", None), "label_lower", "")
        )
        return f"fk:{str(label).lower()}:{getattr(remote, 'field_name', None) or 'pk'}"
    try:
        return f.db_type(connection)
    except Exception:  # noqa: BLE001 - a custom field that needs a bound model
        return f"{type(f).__module__}.{type(f).__name__}"


_VARCHAR = re.compile(r"^(?:varchar|character varying)\((\d+)\)$")
_DECIMAL = re.compile(r"^(?:numeric|decimal)\((\d+),\s*(\d+)\)$")
_LADDERS = (
    ("smallint", "integer", "bigint"),
    ("smallserial", "serial", "bigserial"),
    ("real", "double precision"),
)


def _type_change(
    old: models.Field, new: models.Field, connection: Any
) -> tuple[str, str, str] | None:
    """(old type, new type, 'wider' | 'narrower' | 'incompatible'), or None if unchanged."""
    old_type, new_type = _db_type(old, connection), _db_type(new, connection)
    if old_type == new_type:
        return None
    a, b = str(old_type).lower().strip(), str(new_type).lower().strip()
    return str(old_type), str(new_type), _compare_types(a, b)


def _compare_types(a: str, b: str) -> str:
    va, vb = _VARCHAR.match(a), _VARCHAR.match(b)
    if va and vb:
        return "wider" if int(vb.group(1)) > int(va.group(1)) else "narrower"
    if va and b == "text":
        return "wider"
    if vb and a == "text":
        return "narrower"
    da, db = _DECIMAL.match(a), _DECIMAL.match(b)
    if da and db:
        pa, sa, pb, sb = (int(x) for x in (*da.groups(), *db.groups()))
        if sb >= sa and pb - sb >= pa - sa:
            return "wider"
        if sb <= sa and pb - sb <= pa - sa:
            return "narrower"
        return "incompatible"
    for ladder in _LADDERS:
        # "integer unsigned" (SQLite's PositiveIntegerField) climbs the same ladder as "integer"
        base_a = a if a in ladder else a.split()[0]
        base_b = b if b in ladder else b.split()[0]
        if base_a in ladder and base_b in ladder:
            return "wider" if ladder.index(base_b) > ladder.index(base_a) else "narrower"
    return "incompatible"
