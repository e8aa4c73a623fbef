"""Rollout records as ``deploy --history`` prints them: each rollout with its batches, each
host's state, and the ids of the hosts' own deploys."""

from __future__ import annotations

from typing import Any

from ..models import Rollout


def rollout_history(limit: int = 20) -> list[dict[str, Any]]:
    """Rollouts, newest first."""
    rows = []
    for r in Rollout.objects.prefetch_related("deployments")[: max(limit, 0)]:
        rows.append(
            {
                "id": r.pk,
                "status": r.status,
                "trigger": r.trigger,
                "coordinator": r.coordinator,
                "previous_sha": r.previous_sha,
                "target_sha": r.target_sha,
                "batch_size": r.batch_size,
                "batches": r.batches,
                "progress": r.progress,
                "deployments": {d.host: d.pk for d in sorted(r.deployments.all(), key=_pk)},
                "message": r.message,
                "created_at": r.created_at.isoformat() if r.created_at else None,
                "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            }
        )
    return rows


def _pk(record: Any) -> int:
    return record.pk


def rollouts_table(rows: list[dict[str, Any]]) -> str:
    """One line per rollout, then one per host: its state and its deploy's id."""
    lines = [
        f"{'rollout':>7}  {'status':<12} {'started (UTC)':<20} {'from':<10} {'to':<10} message"
    ]
    for row in rows:
        started = (row["created_at"] or "")[:19].replace("T", " ")
        lines.append(
            f"{row['id']:>7}  {row['status']:<12} {started:<20} "
            f"{(row['previous_sha'] or '-')[:10]:<10} {(row['target_sha'] or '-')[:10]:<10} "
            f"{(row['message'] or '').splitlines()[0][:90] if row['message'] else ''}"
        )
        for number, batch in enumerate(row["batches"], 1):
            for host in batch:
                deploy = row["deployments"].get(host)
                ref = f" (deploy #{deploy})" if deploy else ""
                lines.append(f"{'':>9}batch {number} {host}: {row['progress'].get(host, '?')}{ref}")
    return "\n".join(lines)
