"""Pre-deploy rules: the OLD release serves while the migration runs, so each rule asks "does
the old code still work against the new schema?"."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.migrations import operations as ops

from .column_types import type_change
from .rule_context import (
    EMPTY_MODEL_STATE,
    RuleContext,
    column_name,
    has_db_default,
    normalise_together,
    together_of,
)
from .rules_any_stage import new_model_verdict
from .verdict import EXPAND_CONTRACT, SAFE, UNKNOWN, UNSAFE, Verdict, verdict


def pre_create_model(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(
        op, SAFE, f"creates table {ctx.table(op.name)}, which the old release never queries."
    )


def pre_delete_model(op: Any, ctx: RuleContext) -> Verdict:
    table = ctx.table(op.name)
    return verdict(
        op,
        UNSAFE,
        f"drops table {table} while the old release's model {op.name} still queries it: every "
        "request that touches it fails until the reload.",
        f"{EXPAND_CONTRACT}: first deploy code that no longer uses {op.name}, then drop the "
        "table in a post-deploy migration (zerodeploy = {'stage': 'post'}) or a later release.",
    )


def pre_add_field(op: Any, ctx: RuleContext) -> Verdict:
    f = op.field
    table = ctx.table(op.model_name)
    if f.many_to_many:
        return verdict(op, SAFE, "creates a new join table, which the old release never queries.")
    if f.null:
        return verdict(op, SAFE, f"adds a nullable column to {table}; the old release ignores it.")
    if has_db_default(f):
        return verdict(
            op,
            SAFE,
            f"adds a column with a database default to {table}; the old release's "
            "INSERTs get the default.",
        )
    return verdict(
        op,
        UNSAFE,
        f"adds NOT NULL column {column_name(op.name, f)} to {table} without a database default: the "
        "old release's INSERTs do not name the column and fail with a NOT NULL violation "
        "(Django's default= lives in Python only, not in the database).",
        f"{EXPAND_CONTRACT}: add the field with null=True (or db_default=..., Django 5.0+), "
        "deploy code that writes it, backfill, then make it NOT NULL in a post-deploy migration.",
    )


def pre_remove_field(op: Any, ctx: RuleContext) -> Verdict:
    old = ctx.old_field(op.model_name, op.name)
    table = ctx.table(op.model_name)
    if old is not None and old.many_to_many:
        what = f"drops the join table of {op.model_name}.{op.name}"
    else:
        column = column_name(op.name, old) if old is not None else op.name
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


def pre_rename_field(op: Any, ctx: RuleContext) -> Verdict:
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


def pre_rename_model(op: Any, ctx: RuleContext) -> Verdict:
    old_table = ctx.table(op.old_name)
    explicit = (ctx.model_state(op.old_name) or EMPTY_MODEL_STATE).options.get("db_table")
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


def pre_alter_model_table(op: Any, ctx: RuleContext) -> Verdict:
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


def pre_alter_field(op: Any, ctx: RuleContext) -> Verdict:
    old = ctx.known_field(op.model_name, op.name)  # compare with what the old release writes
    new = op.field
    if old is None:
        return verdict(op, UNKNOWN, "the field is not in the model state before this operation.")
    table = ctx.table(op.model_name)
    old_col = column_name(op.name, old)
    unsafe = alter_breaks_queries(op, old, new, table)
    if unsafe:
        return unsafe
    change = type_change(old, new, ctx.connection)
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
    unsafe = alter_breaks_writes(op, old, new, table, old_col)
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


def alter_breaks_queries(op: Any, old: Any, new: Any, table: str) -> Verdict | None:
    """A renamed column or a new primary key breaks the queries the old release sends."""
    old_col, new_col = column_name(op.name, old), column_name(op.name, new)
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


def alter_breaks_writes(op: Any, old: Any, new: Any, table: str, old_col: str) -> Verdict | None:
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
    if has_db_default(old) and not has_db_default(new) and not new.null:
        return verdict(
            op,
            UNSAFE,
            f"drops the database default of NOT NULL column {table}.{old_col}, which the "
            "old release's INSERTs rely on.",
            f"{EXPAND_CONTRACT}: drop the default post-deploy.",
        )
    return None


def pre_together(op: Any, ctx: RuleContext) -> Verdict:
    before = together_of(ctx, op.name, "unique_together")
    added = normalise_together(op.option_value) - before
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


def pre_add_constraint(op: Any, ctx: RuleContext) -> Verdict:
    constraint = op.constraint
    table = ctx.table(op.model_name)
    if ctx.is_new(op.model_name):
        return new_model_verdict(op, ctx)
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


def pre_order_wrt(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(
        op,
        UNSAFE,
        f"adds or drops the NOT NULL _order column of {ctx.table(op.name)}, which the old "
        "release's INSERTs and queries depend on.",
        f"{EXPAND_CONTRACT}: change order_with_respect_to only in a release deployed with a "
        "maintenance window, or model the order as a nullable field first.",
    )
