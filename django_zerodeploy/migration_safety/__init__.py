"""Migration safety: classify the pending plan, split it into pre-/post-deploy stages, and
apply a stage with PostgreSQL lock timeouts. See docs/migrations.md."""

from .apply import ApplyResult, apply_stage, error_sqlstate, parse_duration_ms
from .classify import POST, PRE, SAFE, UNKNOWN, UNSAFE, Context, Verdict, classify
from .plan import (
    MARKER,
    Marker,
    MigrationPlan,
    PendingMigration,
    PlanError,
    build_plan,
    read_marker,
)
from .report import plan_table, refusal_message, warnings_text

__all__ = [
    "ApplyResult",
    "Context",
    "MARKER",
    "Marker",
    "MigrationPlan",
    "POST",
    "PRE",
    "PendingMigration",
    "PlanError",
    "SAFE",
    "UNKNOWN",
    "UNSAFE",
    "Verdict",
    "apply_stage",
    "build_plan",
    "classify",
    "error_sqlstate",
    "parse_duration_ms",
    "plan_table",
    "read_marker",
    "refusal_message",
    "warnings_text",
]
