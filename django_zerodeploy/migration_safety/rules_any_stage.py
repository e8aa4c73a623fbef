"""Rules that read the same at either stage: indexes, Python-side options, custom SQL and
code, and operations on a table this same plan created."""

from __future__ import annotations

from typing import Any

from django.db.migrations import operations as ops

from .rule_context import RuleContext
from .verdict import EXPAND_CONTRACT, SAFE, UNKNOWN, Verdict, always, verdict


def index(op: Any, ctx: RuleContext) -> Verdict:
    hint = ""
    if ctx.connection.vendor == "postgresql" and type(op).__name__ == "AddIndex":
        hint = " On PostgreSQL CREATE INDEX blocks writes while it builds: use AddIndexConcurrently for big tables."
    return verdict(
        op, SAFE, "indexes change speed, not results; both releases keep working." + hint
    )


state_only = always(
    SAFE, "changes Python-side options only; no SQL the serving release can notice."
)


remove_constraint = always(SAFE, "removing a constraint only relaxes what the database accepts.")


def run_sql(op: Any, ctx: RuleContext) -> Verdict:
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


def run_python(op: Any, ctx: RuleContext) -> Verdict:
    if op.code is ops.RunPython.noop:
        return verdict(op, SAFE, "runs no code.")
    return verdict(
        op,
        UNKNOWN,
        "runs Python code (a data migration) while the other release serves: safe only if it "
        "changes no data that release depends on; keep it short, it runs inside the migrate step.",
        "Backfills belong between expand and contract; big ones in batches outside the deploy.",
    )


new_model_verdict = always(
    SAFE, "acts on a table created earlier in this same plan; the old release never uses it."
)


extension = always(SAFE, "installs a PostgreSQL extension; existing queries are unaffected.")
