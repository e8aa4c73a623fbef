"""Deploys a kill interrupted: their ``running`` records found (with the lock held), the steps
they left running waited for, the records marked ``interrupted``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable

import psutil
from django.db import DatabaseError, transaction
from django.utils import timezone

from .. import exit_codes
from ..conf import app_settings
from ..exit_codes import CommandFailure
from ..models import Deployment, DeploymentStep
from ..osutil import started_at
from .project import OWNER_ENV
from .records import hostname

Status = Deployment.Status
StepStatus = DeploymentStep.Status


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
