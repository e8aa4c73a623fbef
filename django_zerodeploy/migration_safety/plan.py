"""The pending migration plan of the code in this process, classified and split into stages.

Run by the deploy's preflight in a subprocess whose code is the *new* release (its git
worktree) and whose database is the live one: the loader reads the new release's migration
files, the recorder reads what the live database has applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations import operations as ops
from django.db.migrations.exceptions import InconsistentMigrationHistory
from django.db.migrations.executor import MigrationExecutor

from .classify import classify
from .marker import PlanError, read_marker
from .rule_context import RuleContext
from .verdict import POST, PRE, UNKNOWN, UNSAFE, PendingMigration


@dataclass
class MigrationPlan:
    """Everything the deploy needs to decide, before anything changes."""

    pending: list[PendingMigration] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # refusals that are not about one operation
    warnings: list[str] = field(default_factory=list)
    allow_unsafe: bool = False
    vendor: str = ""

    def _ops(self, classification: str, acknowledged: bool | None = None) -> list[dict[str, Any]]:
        return [
            {**op.as_dict(), "app": m.app, "name": m.name, "stage": m.stage}
            for m in self.pending
            for op in m.operations
            if op.classification == classification
            and (acknowledged is None or m.acknowledged == acknowledged)
        ]

    @property
    def unsafe(self) -> list[dict[str, Any]]:
        """Unsafe operations nobody acknowledged: these refuse the deploy."""
        return self._ops(UNSAFE, acknowledged=False)

    @property
    def acknowledged_unsafe(self) -> list[dict[str, Any]]:
        return self._ops(UNSAFE, acknowledged=True)

    @property
    def unknown(self) -> list[dict[str, Any]]:
        return self._ops(UNKNOWN)

    @property
    def refused(self) -> bool:
        return bool(self.unsafe or self.errors)

    @property
    def pre(self) -> list[PendingMigration]:
        return [m for m in self.pending if m.stage == PRE]

    @property
    def post(self) -> list[PendingMigration]:
        return [m for m in self.pending if m.stage == POST]

    def as_dict(self) -> dict[str, Any]:
        """The data of ``plan --json`` (report.plan_json adds the refusal message)."""
        return {
            "pending": [m.as_dict() for m in self.pending],
            "unsafe": self.unsafe,
            "acknowledged_unsafe": self.acknowledged_unsafe,
            "unknown": self.unknown,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "refused": self.refused,
        }


def classify_pending(
    database: str = DEFAULT_DB_ALIAS, *, allow_unsafe: bool = False
) -> MigrationPlan:
    """Classify every operation that ``migrate`` would apply now, in its order."""
    connection = connections[database]
    executor = MigrationExecutor(connection)
    loader = executor.loader
    try:
        loader.check_consistent_history(connection)
    except InconsistentMigrationHistory as exc:
        raise PlanError(f"Inconsistent migration history: {exc}") from exc
    plan = MigrationPlan(allow_unsafe=allow_unsafe, vendor=connection.vendor)
    conflict = _conflict_error(loader)
    if conflict:
        plan.errors.append(conflict)
        return plan
    unknown = _unknown_applied_warning(loader)
    if unknown:
        plan.warnings.append(unknown)
    steps = executor.migration_plan(loader.graph.leaf_nodes())
    state = executor._create_project_state(with_applied_migrations=True)  # noqa: SLF001 - what migrate itself starts from
    baseline = state.clone()
    new_models: set[tuple[str, str]] = set()
    for migration, backwards in steps:
        if backwards:  # leaf nodes never unapply; kept for safety
            continue
        plan.pending.append(
            _classify_migration(migration, state, connection, new_models, baseline, allow_unsafe)
        )
    plan.errors.extend(_stage_order_errors(plan, loader.graph))
    return plan


def _conflict_error(loader: Any) -> str | None:
    """Two leaf migrations in one app: migrate would refuse, so the plan says why at once."""
    conflicts = loader.detect_conflicts()
    if not conflicts:
        return None
    names = "; ".join(f"{app}: {', '.join(sorted(n))}" for app, n in sorted(conflicts.items()))
    return f"Conflicting migrations ({names}): run makemigrations --merge before deploying."


def _unknown_applied_warning(loader: Any) -> str | None:
    """Applied migrations this code lacks mean the release is older than the schema."""
    unknown_applied = sorted(
        f"{app}.{name}"
        for app, name in loader.applied_migrations
        if (app, name) not in loader.graph.nodes
        and app in loader.migrated_apps
        and not _replaced(loader, (app, name))
    )
    if not unknown_applied:
        return None
    return (
        "The database has migrations this release does not know (it is older than the "
        f"schema): {', '.join(unknown_applied)}."
    )


def _classify_migration(
    migration: Any,
    state: Any,
    connection: Any,
    new_models: set[tuple[str, str]],
    baseline: Any,
    allow_unsafe: bool,
) -> PendingMigration:
    """One migration's verdicts, moving ``state`` forwards as migrate would, op by op."""
    marker = read_marker(migration)
    verdicts = []
    for op in migration.operations:
        ctx = RuleContext(
            migration.app_label, marker.stage, state, connection, new_models, baseline
        )
        verdicts.append(classify(op, ctx))
        _track_new_models(op, migration.app_label, new_models)
        op.state_forwards(migration.app_label, state)
    has_unsafe = any(v.classification == UNSAFE for v in verdicts)
    by = ("marker" if marker.allow_unsafe else "flag" if allow_unsafe else "") if has_unsafe else ""
    return PendingMigration(
        app=migration.app_label,
        name=migration.name,
        stage=marker.stage,
        acknowledged=marker.allow_unsafe or allow_unsafe,
        operations=verdicts,
        acknowledged_by=by,
        acknowledgement_reason=marker.reason if by == "marker" else "",
    )


def _replaced(loader: Any, key: tuple[str, str]) -> bool:
    return any(key in (m.replaces or ()) for m in loader.disk_migrations.values())


def _track_new_models(op: Any, app_label: str, new_models: set[tuple[str, str]]) -> None:
    if isinstance(op, ops.CreateModel):
        new_models.add((app_label, op.name_lower))
    elif isinstance(op, ops.RenameModel) and (app_label, op.old_name_lower) in new_models:
        new_models.add((app_label, op.new_name_lower))


def _stage_order_errors(plan: MigrationPlan, graph: Any) -> list[str]:
    """A pre-deploy migration cannot run before the reload if it needs a post-deploy one."""
    post = {(m.app, m.name) for m in plan.post}
    errors = []
    for m in plan.pre:
        needs = [n for n in graph.forwards_plan((m.app, m.name)) if n in post]
        if needs:
            names = ", ".join(f"{a}.{n}" for a, n in needs)
            errors.append(
                f"{m.label} is pre-deploy but depends on post-deploy migration(s) {names}: it "
                "would have to wait until after the reload. Mark it post-deploy too, or move "
                "the dependency into a pre-deploy migration."
            )
    return errors


__all__ = ["MigrationPlan", "PlanError", "classify_pending", "read_marker"]
