"""The rule tables: which rule judges each operation class, one table per stage. Exact
classes only (see classify._rule_for); optional operations join when Django or psycopg has them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.migrations import operations as ops

from .rule_context import RuleContext
from .rules_any_stage import extension, index, remove_constraint, run_python, run_sql, state_only
from .rules_post import (
    post_adds,
    post_alter_field,
    post_remove_field,
    post_removes_model,
    post_renames,
    post_safe,
)
from .rules_pre import (
    pre_add_constraint,
    pre_add_field,
    pre_alter_field,
    pre_alter_model_table,
    pre_create_model,
    pre_delete_model,
    pre_order_wrt,
    pre_remove_field,
    pre_rename_field,
    pre_rename_model,
    pre_together,
)
from .verdict import Verdict

Rule = Callable[[Any, RuleContext], Verdict]

PRE_RULES: dict[type, Rule] = {
    ops.CreateModel: pre_create_model,
    ops.DeleteModel: pre_delete_model,
    ops.AddField: pre_add_field,
    ops.RemoveField: pre_remove_field,
    ops.RenameField: pre_rename_field,
    ops.AlterField: pre_alter_field,
    ops.RenameModel: pre_rename_model,
    ops.AlterModelTable: pre_alter_model_table,
    ops.AlterUniqueTogether: pre_together,
    ops.AlterOrderWithRespectTo: pre_order_wrt,
    ops.AddConstraint: pre_add_constraint,
    ops.RemoveConstraint: remove_constraint,
    ops.AddIndex: index,
    ops.RemoveIndex: index,
    ops.RenameIndex: index,
    ops.AlterModelOptions: state_only,
    ops.AlterModelManagers: state_only,
    ops.RunSQL: run_sql,
    ops.RunPython: run_python,
}


POST_RULES: dict[type, Rule] = {
    **PRE_RULES,
    ops.CreateModel: post_adds,
    ops.AddField: post_adds,
    ops.DeleteModel: post_removes_model,
    ops.RemoveField: post_remove_field,
    ops.RenameField: post_renames,
    ops.RenameModel: post_renames,
    ops.AlterModelTable: post_renames,
    ops.AlterField: post_alter_field,
    ops.AlterUniqueTogether: post_safe,
    ops.AddConstraint: post_safe,
    ops.AlterOrderWithRespectTo: pre_order_wrt,
}


def _optional_rules() -> None:
    """Operations that exist only in some Django versions or need psycopg."""
    names = {
        "AlterModelTableComment": state_only,
        "AlterConstraint": state_only,
        "AlterIndexTogether": pre_together,
    }
    for name, rule in names.items():
        op_class = getattr(ops, name, None)
        if op_class is not None:
            PRE_RULES[op_class] = POST_RULES[op_class] = rule
    try:
        from django.contrib.postgres import operations as pg
    except ImportError:  # psycopg missing: these operations cannot appear in a plan anyway
        return
    for name in ("AddIndexConcurrently", "RemoveIndexConcurrently"):
        PRE_RULES[getattr(pg, name)] = POST_RULES[getattr(pg, name)] = index
    for name in ("ValidateConstraint", "CreateCollation"):
        if hasattr(pg, name):
            PRE_RULES[getattr(pg, name)] = POST_RULES[getattr(pg, name)] = state_only
    PRE_RULES[pg.AddConstraintNotValid] = pre_add_constraint
    POST_RULES[pg.AddConstraintNotValid] = post_safe
    PRE_RULES[pg.CreateExtension] = POST_RULES[pg.CreateExtension] = extension


_optional_rules()
