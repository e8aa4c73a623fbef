"""Classify one migration operation: can it run while the *other* release serves?

A pre-deploy migration runs while the previous release still serves, so the question is
"does the old code still work against the new schema?". A post-deploy migration runs after
the reload, while the new release already serves, so the question becomes "does the new
code work against the schema *before* this migration?". The rules read the operation and
the model state just before it (Django's ``ProjectState``), never file names: their tables
are in rule_tables (the rules in rules_pre, rules_post, rules_any_stage); this module picks one
per operation and looks inside SeparateDatabaseAndState.
"""

from __future__ import annotations

from typing import Any

from django.db.migrations import operations as ops

from .rule_context import RuleContext
from .rule_tables import POST_RULES, PRE_RULES, Rule
from .rules_any_stage import new_model_verdict
from .verdict import EXPAND_CONTRACT, PRE, RANK, SAFE, UNKNOWN, Verdict, verdict

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
    rules = PRE_RULES if ctx.stage == PRE else POST_RULES
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
            return new_model_verdict(op, ctx)
    if ctx.stage == PRE and isinstance(op, (ops.RemoveField, ops.AlterField, ops.RenameField)):
        name = op.old_name if isinstance(op, ops.RenameField) else op.name
        if ctx.field_is_new(op.model_name, name):
            return verdict(
                op,
                SAFE,
                f"acts on field {name!r}, added earlier in this same plan; the old release never uses it.",
            )
    return rule(op, ctx)


def _rule_for(op: Any, rules: dict[type, Rule]) -> Rule | None:
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
