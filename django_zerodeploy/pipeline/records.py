"""Deployment records, written as the deploy goes: a killed deploy leaves an honest ``running``
row, which the next deploy marks ``interrupted``. Also the history, the bad-release rule and the
choice of the release ``--rollback`` goes back to."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from django.db import DatabaseError, transaction
from django.utils import timezone

from .. import exit_codes, proc
from ..conf import app_settings
from ..exit_codes import CommandFailure
from ..git import Git, GitError
from ..models import Deployment, DeploymentStep
from ..osutil import os_user, started_at
from ..shared_paths import unlink_from
from .project import OWNER_ENV

Status = Deployment.Status
StepStatus = DeploymentStep.Status
CANCELLED = (
    "Cancelled"  # message prefix of a deploy stopped by the operator (not the release's fault)
)


def hostname() -> str:
    """This host's name in the records (ZERODEPLOY["HOST"]): hosts sharing a database must not
    mark each other's running deploys."""
    return app_settings.host


def worktrees_dir() -> Path:
    path = app_settings.runtime_dir / "worktrees"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:  # e.g. a file in the way, a full disk
        raise CommandFailure(
            f"Cannot use {path} for the release's worktree: {exc.strerror or exc}.",
            exit_codes.USAGE,
        ) from None
    return path


@dataclass
class StepResult:
    """One line of the step table."""

    name: str
    status: str  # DeploymentStep.Status value
    detail: str = ""
    duration: float | None = None
    returncode: int | None = None
    output: str = ""
    started_at: Any = None

    def as_dict(self) -> dict[str, Any]:
        """For DeployResult.steps, which --json prints and django-q2 stores: redacted."""
        return {
            "name": self.name,
            "status": self.status,
            "detail": proc.redact(self.detail),
            "duration": None if self.duration is None else round(self.duration, 3),
            "returncode": self.returncode,
        }


@dataclass
class Recorder:
    """Keeps the Deployment row and its steps in step with the run. Database errors are
    reported once and never stop the deploy: the site matters more than its log."""

    deployment: Deployment | None = None
    warn: Callable[[str], None] = print
    rows: dict[int, DeploymentStep] = field(default_factory=dict)
    deferred: dict[int, StepResult] = field(default_factory=dict)  # skipped, not written yet
    opened: bool = False
    _warned: bool = False

    def _safe(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except DatabaseError as exc:
            if not self._warned:
                self._warned = True
                self.warn(f"  warning: cannot write the deployment record: {exc}")
            return None

    def open(
        self, values: dict[str, Any], planned: list[str], done: list[StepResult]
    ) -> Deployment | None:
        """Create (or take over a queued) record with one row per planned step: the steps
        already done as they ended, the others pending. One transaction."""

        def write() -> Deployment:
            with transaction.atomic():
                if self.deployment is None:
                    deployment = Deployment.objects.create(**values)
                else:
                    deployment = self.deployment
                    for key, value in values.items():
                        setattr(deployment, key, value)
                    deployment.save()
                    deployment.steps.all().delete()
                made = []
                for position, name in enumerate(planned):
                    if position < len(done):
                        made.append(
                            DeploymentStep(
                                deployment=deployment,
                                position=position,
                                **self._values(done[position]),
                            )
                        )
                    else:
                        made.append(
                            DeploymentStep(deployment=deployment, position=position, name=name)
                        )
                rows = DeploymentStep.objects.bulk_create(made)
            self.deployment = deployment
            self.rows = dict(enumerate(rows))
            return deployment

        result = self._safe(write)
        self.opened = result is not None
        for position in range(len(planned), len(done)):
            self.save_step(position, done[position])
        return result

    def update(self, **values: Any) -> None:
        deployment = self.deployment
        if not self.opened or deployment is None or deployment.pk is None:
            return
        for key, value in values.items():
            setattr(deployment, key, value)
        self._safe(lambda: deployment.save(update_fields=list(values)))

    @staticmethod
    def _values(step: StepResult) -> dict[str, Any]:
        keep = int(app_settings.KEEP_OUTPUT_BYTES)
        return {
            "name": step.name[:64],
            "status": step.status,
            "detail": proc.redact(step.detail)[:500],
            "duration": step.duration,
            "returncode": step.returncode,
            "output": proc.tail(proc.redact(step.output), keep),
            "started_at": step.started_at,
        }

    def save_step(self, position: int, step: StepResult) -> None:
        """Create or update the row of the step at ``position`` (once the record is open). A
        skipped step changed nothing, so its row is written with the next write, in the same
        transaction: one commit (an fsync on SQLite) less per skipped step."""
        if not self.opened or self.deployment is None or self.deployment.pk is None:
            return
        self.deferred[position] = step
        if step.status != StepStatus.SKIPPED:
            self._safe(self._write_deferred)

    def _write_deferred(self) -> None:
        with transaction.atomic():
            for position, step in sorted(self.deferred.items()):
                row = self.rows.get(position) or DeploymentStep(deployment=self.deployment)
                for key, value in dict(self._values(step), position=position).items():
                    setattr(row, key, value)
                row.save()
                self.rows[position] = row
        self.deferred.clear()

    def note_release(self, release_dir: str, venv_key: str) -> None:
        """The releases layout's release directory and venv key, written when the step that
        learnt them ends: a deploy killed later leaves a row naming the release it was making."""
        deployment = self.deployment
        if deployment is None:
            return
        values = {"release_dir": release_dir, "venv_key": venv_key}
        changed = {k: v for k, v in values.items() if (getattr(deployment, k) or "") != v}
        if changed:
            self.update(**changed)

    def drop_pending(self) -> None:
        """Steps that never ran (nothing to deploy, or a failure before them) are removed;
        skipped steps not written yet are written first."""
        if not self.opened or self.deployment is None or self.deployment.pk is None:
            return
        self._safe(self._write_deferred)
        self._safe(lambda: self.deployment.steps.filter(status=StepStatus.PENDING).delete())


# -- interrupted deploys ------------------------------------------------------------------------
def interrupted_candidates(exclude: int | None) -> list[Deployment]:
    """``running`` records of this host other than ours whose process is gone. Called with the
    lock held, so none of them is deploying; but a live process may still be *waiting* for the
    lock (an admin deploy in a django-q2 worker marks its record running first): not ours."""
    query = Deployment.objects.filter(status=Status.RUNNING, host=hostname())
    if exclude:
        query = query.exclude(pk=exclude)
    # another checkout on this host (sharing the database) has its own lock: not ours to judge
    lock = str(app_settings.runtime_dir / "deploy.lock")
    return [
        d
        for d in query
        if (d.options or {}).get("lock", lock) == lock and not _process_alive_since(d)
    ]


def _process_alive_since(deployment: Deployment) -> bool:
    """Is the record's process alive, and the same process (started before the record)?"""
    if not deployment.pid or deployment.pid == os.getpid():
        return False
    created = started_at(deployment.pid)
    if created is None:
        return False
    since = deployment.started_at or deployment.created_at
    return created <= since.timestamp() + 1


def orphan_steps(pids: Iterable[int]) -> list[psutil.Process]:
    """Subprocesses a killed deploy left running (e.g. a migrate): they carry its owner token."""
    tokens = {f"{app_settings.runtime_dir}:{pid}" for pid in pids if pid}
    if not tokens:
        return []
    found = []
    me = os.getuid()
    for process in psutil.process_iter(["pid", "uids"]):
        with contextlib.suppress(psutil.Error):
            uids = process.info.get("uids")
            if uids and uids.real != me:
                continue
            if process.environ().get(OWNER_ENV) in tokens:
                found.append(process)
    return found


def wait_for_orphans(pids: Iterable[int], timeout: float, echo: Callable[[str], None]) -> None:
    """Wait (bounded) for steps a killed deploy left running; refuse with exit 4 if they
    outlive ``timeout``. They are not killed: a half-applied migration is worse than a wait."""
    orphans = orphan_steps(pids)
    if not orphans:
        return
    names = ", ".join(f"pid {p.pid} ({' '.join(_cmdline(p))[:120]})" for p in orphans)
    echo(f"  waiting up to {timeout:g} s for steps an interrupted deploy left running: {names}")
    _gone, alive = psutil.wait_procs(orphans, timeout=timeout)
    if alive:
        raise CommandFailure(
            f"Steps of an interrupted deploy are still running after {timeout:g} s: {names}. "
            "Wait for them to finish and deploy again.",
            exit_codes.LOCKED,
        )


def _cmdline(process: psutil.Process) -> list[str]:
    with contextlib.suppress(psutil.Error):
        return process.cmdline()
    return []


def mark_interrupted(stale: list[Deployment], by_pid: int) -> list[int]:
    ids = []
    for deployment in stale:
        note = f"by the next deploy (pid {by_pid})"
        try:
            with transaction.atomic():
                DeploymentStep.objects.filter(
                    deployment=deployment, status__in=[StepStatus.RUNNING]
                ).update(status=StepStatus.FAILED, detail="interrupted")
                deployment.steps.filter(status=StepStatus.PENDING).delete()
                deployment.status = Status.INTERRUPTED
                deployment.finished_at = timezone.now()
                deployment.message = (
                    f"Interrupted: the deploy process (pid {deployment.pid}) ended before finishing; "
                    f"found {note}, which brought the site to a consistent release."
                )
                deployment.save(update_fields=["status", "finished_at", "message"])
            ids.append(deployment.pk)
        except DatabaseError:
            continue
    return ids


def interrupted_shas(ids: Iterable[int]) -> list[str]:
    shas: list[str] = []
    for deployment in Deployment.objects.filter(pk__in=list(ids)):
        shas += [s for s in (deployment.previous_sha, deployment.target_sha) if s]
    return shas


def cleanup_worktrees(git: Git) -> list[str]:
    """Remove worktrees left by deploys that are gone (named ``<sha>-<pid>``)."""
    removed = []
    for path in sorted(worktrees_dir().iterdir()):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and psutil.pid_exists(int(pid)):
            continue
        remove_worktree(git, path)
        removed.append(path.name)
    return removed


def remove_worktree(git: Git, path: Path) -> None:
    """Remove a worktree of ours, even one that ``git worktree add`` left half made; the links
    to live state go first, so that nothing can delete through them."""
    if path.is_dir():
        unlink_from(path)
    git.worktree_remove(path)  # also prunes what git knew of it
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


# -- the bad-release rule and --rollback ----------------------------------------------------------
def bad_release(sha: str, innocent: Iterable[str]) -> Deployment | None:
    """The deployment that rolled ``sha`` back, unless a later deploy of it succeeded (--force).
    A failure of a step in ``innocent`` (before the release was even built) does not count."""
    finished = (
        Deployment.objects.filter(target_sha=sha)
        .exclude(status__in=[Status.QUEUED, Status.RUNNING, Status.NOTHING, Status.INTERRUPTED])
        .order_by("-created_at", "-id")
    )
    for deployment in finished[:50]:
        if deployment.status == Status.SUCCEEDED:
            return None
        if deployment.message.startswith(CANCELLED):
            continue
        if deployment.status == Status.ROLLED_BACK:
            return deployment
        failed_release_step = (
            deployment.steps.filter(status=StepStatus.FAILED)
            .exclude(name__in=sorted(innocent))
            .exclude(name__startswith="rollback")
            .exists()
        )
        if failed_release_step:
            return deployment
    return None


def rollback_target(
    spec: str | bool, serving: set[str], head: str | None, git: Git
) -> tuple[str, str]:
    """(commit, label) that ``--rollback [ID|COMMIT]`` names: a deployment id, a commit, or
    (True) the release that succeeded before the one serving now."""
    if spec is True or spec in ("", None):
        current = serving if serving else ({head} if head else set())
        seen_current = False
        for deployment in Deployment.objects.filter(status=Status.SUCCEEDED).order_by(
            "-created_at", "-id"
        )[:200]:
            if deployment.target_sha in current:
                seen_current = True
                continue
            if seen_current or not current:
                return deployment.target_sha, f"rollback to #{deployment.pk}"
        # no earlier successful deploy recorded: the release the current one replaced
        latest = Deployment.objects.filter(status=Status.SUCCEEDED, target_sha__in=current).first()
        if latest and latest.previous_sha:
            return latest.previous_sha, f"rollback to the release before #{latest.pk}"
        raise CommandFailure(
            "No earlier successful release is recorded: name one with "
            "--rollback ID or --rollback COMMIT.",
            exit_codes.USAGE,
        )
    text = str(spec)
    if text.isdigit() and len(text) < 12:
        deployment = Deployment.objects.filter(pk=int(text)).first()
        if deployment is not None:
            if deployment.status != Status.SUCCEEDED or not deployment.target_sha:
                raise CommandFailure(
                    f"Deployment #{deployment.pk} did not succeed ({deployment.status}): roll back to "
                    "a release that served.",
                    exit_codes.USAGE,
                )
            return deployment.target_sha, f"rollback to #{deployment.pk}"
    try:
        return git.resolve(text), f"rollback to {text}"
    except GitError as exc:
        raise CommandFailure(
            f"--rollback {text!r}: no such deployment id or commit ({exc}).", exit_codes.USAGE
        ) from None


# -- history ----------------------------------------------------------------------------------------
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


def new_record_values(options: Any, started: Any) -> dict[str, Any]:
    return {
        "status": Status.RUNNING,
        "trigger": options.trigger or "cli",
        "user_id": options.user_id,
        "username": (options.username or os_user())[:150],
        "host": hostname()[:255],
        "pid": os.getpid(),
        "options": options_dict(options),
        "started_at": started,
        "message": "",
    }


def options_dict(options: Any) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(options)
    data.pop("user_id", None)
    data.pop("username", None)
    data["argv"] = [proc.redact(a) for a in sys.argv[1:]][:30] if options.trigger == "cli" else []
    data["lock"] = str(app_settings.runtime_dir / "deploy.lock")  # which checkout ran it
    return data
