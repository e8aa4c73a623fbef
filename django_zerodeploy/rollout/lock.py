"""One rollout at a time, across every host: a single row in the shared database.

A file lock would only exclude coordinators on one host. The row names the rollout that holds
it; its holder refreshes ``heartbeat_at`` every HEARTBEAT seconds from a thread. A row older
than STALE belongs to a coordinator that was killed: the next rollout takes it over (one
conditional UPDATE, so two cannot both win) and must first deal with the rollout it left.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, close_old_connections, connections, transaction
from django.utils import timezone

from ..conf import app_settings
from ..exit_codes import LOCKED, CommandFailure
from ..models import Rollout, RolloutLock

HEARTBEAT = 2.0
STALE = timedelta(seconds=15)


def holder_name() -> str:
    return f"{app_settings.host}:{os.getpid()}"


@dataclass
class Acquired:
    """The lock is ours. ``taken_over``: the rollout whose dead coordinator left it."""

    rollout_id: int
    taken_over: int | None = None


def acquire(rollout: Rollout) -> Acquired:
    """Take the lock for ``rollout`` or raise CommandFailure (exit 4) naming the holder."""
    now = timezone.now()
    try:
        with transaction.atomic():
            RolloutLock.objects.create(rollout=rollout, holder=holder_name(), heartbeat_at=now)
        return Acquired(rollout.pk)
    except IntegrityError:
        pass
    current = RolloutLock.objects.filter(name="rollout").first()
    if current is not None:
        previous = current.rollout_id
        taken = RolloutLock.objects.filter(
            name="rollout", rollout_id=previous, heartbeat_at__lt=now - STALE
        ).update(rollout=rollout, holder=holder_name(), heartbeat_at=now)
        if taken:
            return Acquired(rollout.pk, taken_over=previous)
        age = (now - current.heartbeat_at).total_seconds()
        raise CommandFailure(
            f"Rollout #{previous} is running (coordinator {current.holder}, heartbeat "
            f"{age:.0f} s ago); one rollout at a time.",
            LOCKED,
        )
    return acquire(rollout)  # released between our insert and our read: try again


def release(rollout: Rollout) -> None:
    RolloutLock.objects.filter(name="rollout", rollout=rollout).delete()


class Heartbeat:
    """Refreshes the lock row while the coordinator runs (a thread: the rollout mostly waits)."""

    def __init__(self, rollout: Rollout) -> None:
        self.rollout_id = rollout.pk
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollout-lock", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(HEARTBEAT * 2)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            close_old_connections()
            try:
                RolloutLock.objects.filter(name="rollout", rollout_id=self.rollout_id).update(
                    heartbeat_at=timezone.now()
                )
            finally:
                connections.close_all()
