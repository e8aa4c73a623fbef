"""One deploy at a time per checkout.

``fcntl.flock`` on a file in the runtime directory: the kernel drops the lock when the holder's
process ends, however it ends (SIGKILL, crash, reboot), so a dead deploy never blocks the next
one. The file also holds who took it, when, and from which process, for the refusal message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import exit_codes
from ..exit_codes import CommandFailure
from ..osutil import flock_within, os_user, started_at


@dataclass
class Holder:
    """Who holds (or last held) the lock."""

    pid: int | None = None
    user: str = ""
    host: str = ""
    since: str = ""
    deployment_id: int | None = None
    trigger: str = ""
    ref: str = ""

    def describe(self) -> str:
        if not self.pid:
            return "another deploy (holder unknown)"
        who = f"{self.user}@{self.host}" if self.user else self.host
        parts = [f"pid {self.pid}"]
        if who:
            parts.append(f"by {who}")
        if self.deployment_id:
            parts.insert(0, f"deployment #{self.deployment_id}")
        if self.since:
            parts.append(f"since {self.since}")
        if self.trigger:
            parts.append(f"via {self.trigger}")
        return "the deploy " + ", ".join(parts)


@dataclass
class DeployLock:
    """``with DeployLock(path).acquire(wait=0): ...``; ``held_by()`` reads the holder."""

    path: Path
    info: dict[str, Any] = field(default_factory=dict)
    _fd: int | None = None

    def acquire(self, wait: float = 0, poll: float = 0.1, on_wait: Any = None) -> DeployLock:
        """Take the lock, or raise CommandFailure(LOCKED) naming the holder after ``wait``
        seconds (0: at once). An unusable runtime directory is CommandFailure(USAGE)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _unusable(self.path, exc) from None
        told = (lambda: on_wait(self.held_by())) if on_wait else None
        if not flock_within(fd, wait, poll, on_wait=told):
            os.close(fd)
            waited = f" after waiting {wait:g} s" if wait else ""
            raise CommandFailure(
                f"Another deploy is running{waited}: {self.held_by().describe()}. "
                "Wait for it to finish, or use --wait-lock SECONDS.",
                exit_codes.LOCKED,
            )
        self._fd = fd
        try:
            self.update()
        except CommandFailure:
            self.release()
            raise
        return self

    def update(self, **info: Any) -> None:
        """Rewrite the holder information (e.g. once the deployment record exists)."""
        if self._fd is None:
            return
        self.info.update(info)
        holder = {
            "pid": os.getpid(),
            "user": os_user(),
            "host": socket.gethostname(),
            "since": self.info.get("since") or datetime.now(UTC).isoformat(timespec="seconds"),
            **self.info,
        }
        self.info["since"] = holder["since"]
        data = json.dumps(holder).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError as exc:  # e.g. a full disk
            raise _unusable(self.path, exc) from None

    def held_by(self) -> Holder:
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads(self.path.read_text() or "{}")
            known = {k: v for k, v in data.items() if k in Holder.__dataclass_fields__}
            return Holder(**known)
        return Holder()

    def running_holder(self) -> Holder | None:
        """The holder, if the file names a process that still runs (and ran when it took the
        lock). Unlike ``is_held`` it never touches the flock, so asking can never make a deploy
        that starts at that moment find the lock taken."""
        holder = self.held_by()
        if not holder.pid:
            return None
        began = started_at(holder.pid)
        if began is None:
            return None
        with contextlib.suppress(ValueError):
            if began > datetime.fromisoformat(holder.since).timestamp() + 1:
                return None  # a later process that reused the pid
        return holder

    def is_held(self) -> bool:
        """True if some process holds the lock now (does not take it)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor drops the flock
        self._fd = None

    def __enter__(self) -> DeployLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _unusable(path: Path, exc: OSError) -> CommandFailure:
    return CommandFailure(
        f"Cannot use the deploy lock {path}: {exc.strerror or exc}. Check RUNTIME_DIR "
        "(it must be a writable directory with free space).",
        exit_codes.USAGE,
    )


def deploy_lock(runtime_dir: Path) -> DeployLock:
    return DeployLock(runtime_dir / "deploy.lock")
