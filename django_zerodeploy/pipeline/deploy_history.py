"""The deploys as ``deploy --history`` shows them (its table and ``--json``), and the admin's
progress poll."""

from __future__ import annotations

from typing import Any

from ..models import Deployment, DeploymentStep

Status = Deployment.Status


def iso(value: Any) -> str | None:
    """A datetime as ISO 8601 for JSON (history, the admin's progress poll); None stays None."""
    return value.isoformat() if value else None


def deployment_dict(
    deployment: Deployment, steps: list[DeploymentStep] | None = None
) -> dict[str, Any]:
    steps = list(deployment.steps.all()) if steps is None else steps
    return {
        "id": deployment.pk,
        "status": deployment.status,
        "trigger": deployment.trigger,
        "username": deployment.username,
        "host": deployment.host,
        "rollout_id": deployment.rollout_id,
        "pid": deployment.pid,
        "ref": deployment.ref,
        "previous_sha": deployment.previous_sha,
        "target_sha": deployment.target_sha,
        "subject": deployment.subject,
        "message": deployment.message,
        "applied_migrations": deployment.applied_migrations,
        "unsafe_migrations_acknowledged": deployment.unsafe_migrations_acknowledged,
        "mixed_window_seconds": deployment.mixed_window_seconds,
        "release_dir": deployment.release_dir or "",
        "venv_key": deployment.venv_key or "",
        "created_at": iso(deployment.created_at),
        "started_at": iso(deployment.started_at),
        "finished_at": iso(deployment.finished_at),
        "duration": deployment.duration,
        "steps": [
            {
                "name": s.name,
                "status": s.status,
                "duration": s.duration,
                "detail": s.detail,
                "returncode": s.returncode,
            }
            for s in steps
        ],
    }


def history(limit: int = 20) -> list[dict[str, Any]]:
    """Deployments, newest first, as the objects ``deploy --history --json`` prints."""
    deployments = list(
        Deployment.objects.order_by("-created_at", "-id").prefetch_related("steps")[: max(limit, 0)]
    )
    return [deployment_dict(d, list(d.steps.all())) for d in deployments]


def history_table(rows: list[dict[str, Any]]) -> str:
    """``deploy --history``: a line a deploy. The release and venv columns appear once a deploy
    ran in the releases layout (``-`` on the in-place rows)."""
    if not rows:
        return "No deployments recorded yet."
    venv_width = 0
    if any(row.get("release_dir") or row.get("venv_key") for row in rows):
        venv_width = max([4, *(len(row.get("venv_key") or "") for row in rows)])
    release = f"{'release':<27} {'venv':<{venv_width}} " if venv_width else ""
    lines = [
        f"{'id':>5}  {'status':<12} {'started (UTC)':<20} {'duration':>8}  {'from':<10} "
        f"{'to':<10} {release}{'trigger':<8} message"
    ]
    for row in rows:
        started = (row["started_at"] or row["created_at"] or "")[:19].replace("T", " ")
        duration = f"{row['duration']:.1f} s" if row["duration"] is not None else "-"
        release = ""
        if venv_width:
            release = (
                f"{row.get('release_dir') or '-':<27} {row.get('venv_key') or '-':<{venv_width}} "
            )
        message = (row["message"] or "").splitlines()[0][:90] if row["message"] else ""
        lines.append(
            f"{row['id']:>5}  {row['status']:<12} {started:<20} {duration:>8}  "
            f"{(row['previous_sha'] or '-')[:10]:<10} {(row['target_sha'] or '-')[:10]:<10} "
            f"{release}{row['trigger']:<8} {message}"
        )
    return "\n".join(lines)
