"""Human text for a migration plan: the table an operator reads, the refusal message, and the
``plan --json`` document that carries that message to the deploy."""

from __future__ import annotations

from typing import Any

from .marker import MARKER
from .plan import MigrationPlan
from .verdict import EXPAND_CONTRACT, SAFE, UNKNOWN, UNSAFE

_SYMBOL = {SAFE: "safe", UNSAFE: "UNSAFE", UNKNOWN: "unknown"}


def plan_table(plan: MigrationPlan) -> str:
    """One line per migration (stage, classification, name), one indented line per operation."""
    if not plan.pending:
        return "No pending migrations."
    lines = [f"{len(plan.pending)} pending migration(s), in the order they apply:"]
    lines.append(f"  {'stage':<6} {'class':<8} migration")
    for stage_list in (plan.pre, plan.post):
        for m in stage_list:
            ack = f"  [acknowledged: {m.acknowledged_by}]" if m.acknowledged_by else ""
            lines.append(f"  {m.stage:<6} {_SYMBOL[m.classification]:<8} {m.label}{ack}")
            for op in m.operations:
                lines.append(
                    f"  {'':<6} {'':<8}   - {_SYMBOL[op.classification]:<7} {op.description}: {op.reason}"
                )
    if plan.post:
        lines.append("Post-deploy migrations apply after the reload, when no old code serves.")
    return "\n".join(lines)


def refusal_message(plan: MigrationPlan) -> str:
    """Why the deploy is refused, naming app, migration, operation, the breakage and the fix."""
    parts: list[str] = []
    unsafe = plan.unsafe
    if unsafe:
        parts.append(
            f"Unsafe migrations: {len(unsafe)} operation(s) would break the release that is "
            "serving while they run:"
        )
        for op in unsafe:
            who = "the old release" if op["stage"] == "pre" else "the new release"
            parts.append(
                f"  {op['app']}.{op['name']} ({op['stage']}-deploy), {op['operation']} "
                f'"{op["description"]}":\n'
                f"    why {who} breaks: {op['reason']}\n"
                f"    safe sequence: {op['safe_sequence'] or EXPAND_CONTRACT}"
            )
        parts.append(
            "Acknowledge on purpose with deploy --allow-unsafe-migrations (zerodeploy_migrations "
            f'plan --allow-unsafe), or on the migration: {MARKER} = {{"allow_unsafe": "why it is fine"}}.'
        )
    for error in plan.errors:
        parts.append(f"Refused: {error}")
    return "\n".join(parts)


def warnings_text(plan: MigrationPlan) -> str:
    lines = [f"warning: {w}" for w in plan.warnings]
    for op in plan.unknown:
        lines.append(
            f'warning: {op["app"]}.{op["name"]}: {op["operation"]} "{op["description"]}" is unknown: {op["reason"]}'
        )
    return "\n".join(lines)


def plan_json(plan: MigrationPlan) -> dict[str, Any]:
    """What ``plan --json`` prints: the plan's data and, when refused, the whole refusal."""
    return {**plan.as_dict(), "message": refusal_message(plan) if plan.refused else ""}
