"""Post-deploy rules: the NEW release serves before the migration runs, so each rule asks
"does the new code work against the schema *before* this migration?"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.migrations import operations as ops

from .column_types import type_change
from .rule_context import RuleContext, column_name, has_db_default
from .rules_pre import pre_alter_model_table, pre_rename_field, pre_rename_model
from .verdict import EXPAND_CONTRACT, SAFE, UNKNOWN, UNSAFE, Verdict, verdict

# A rename after the reload is as safe as the same rename before it, and no safer.
_PRE_RENAMES: dict[type, Callable[[Any, RuleContext], Verdict]] = {
    ops.RenameField: pre_rename_field,
    ops.RenameModel: pre_rename_model,
    ops.AlterModelTable: pre_alter_model_table,
}


def post_adds(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(
        op,
        UNSAFE,
        "a post-deploy migration runs after the reload, but the new release already uses what "
        "this operation creates and fails until it runs.",
        "Put additive operations (CreateModel, AddField, ...) in a pre-deploy migration.",
    )


def post_removes_model(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(op, SAFE, "contract phase: the new release no longer uses this table.")


def post_remove_field(op: Any, ctx: RuleContext) -> Verdict:
    old = ctx.old_field(op.model_name, op.name)
    if old is None or old.many_to_many or old.null or has_db_default(old):
        return verdict(op, SAFE, "contract phase: neither release uses the column any more.")
    table = ctx.table(op.model_name)
    return verdict(
        op,
        UNSAFE,
        f"{table}.{column_name(op.name, old)} is NOT NULL without a database default: between the "
        "reload and this post-deploy migration the new release's INSERTs omit it and fail.",
        f"{EXPAND_CONTRACT}: make the field nullable (AlterField null=True) in a pre-deploy "
        "migration of this release; keep the RemoveField post-deploy.",
    )


def post_renames(op: Any, ctx: RuleContext) -> Verdict:
    pre = _PRE_RENAMES[type(op)](op, ctx)
    if pre.classification == SAFE:
        return pre
    return verdict(
        op,
        UNSAFE,
        "a rename breaks whichever release uses the other name: before this post-deploy "
        "migration the new release queries a name that does not exist yet.",
        pre.safe_sequence,
    )


def post_alter_field(op: Any, ctx: RuleContext) -> Verdict:
    old = ctx.old_field(op.model_name, op.name)
    new = op.field
    if old is None:
        return verdict(op, UNKNOWN, "the field is not in the model state before this operation.")
    table = ctx.table(op.model_name)
    column = column_name(op.name, old)
    if column != column_name(op.name, new) or old.primary_key != new.primary_key:
        return post_renames_field(op, table, column)
    change = type_change(old, new, ctx.connection)
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


def post_renames_field(op: Any, table: str, column: str) -> Verdict:
    return verdict(
        op,
        UNSAFE,
        f"changes column {table}.{column} after the reload: until then the new release "
        "queries a column that does not exist yet.",
        f"{EXPAND_CONTRACT}: keep the column name.",
    )


def post_safe(op: Any, ctx: RuleContext) -> Verdict:
    return verdict(
        op, SAFE, "contract phase: only tightens or removes what the new release no longer needs."
    )
