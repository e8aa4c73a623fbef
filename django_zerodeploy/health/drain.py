"""The drain flag: a file in this host's runtime directory.

A file, not a database row, so draining one host before maintenance leaves the other hosts
that share the database in the pool. Every worker of every Gunicorn on this host that uses the
same runtime directory reads it on each round of checks.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..conf import app_settings

FLAG_NAME = "draining"


@dataclass(frozen=True)
class DrainState:
    """Who drained this host, when and why (as written by ``healthz --drain``)."""

    since: str = ""
    user: str = ""
    host: str = ""
    reason: str = ""

    def describe(self) -> str:
        who = f" by {self.user}" if self.user else ""
        why = f": {self.reason}" if self.reason else ""
        return f"draining since {self.since or 'an unknown time'}{who}{why}"


def flag_path() -> Path:
    return app_settings.runtime_dir / FLAG_NAME


def is_draining() -> bool:
    """True while this host's drain flag exists."""
    return flag_path().exists()


def drain_state() -> DrainState | None:
    """The flag's content, or None when the host is not draining."""
    try:
        text = flag_path().read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        return DrainState(**{k: str(data.get(k, "")) for k in ("since", "user", "host", "reason")})
    except (ValueError, TypeError, AttributeError):
        return DrainState()  # a flag written by hand (touch) still drains


def set_draining(draining: bool, reason: str = "") -> DrainState | None:
    """Write (atomically) or remove this host's drain flag; returns the new state."""
    path = flag_path()
    if not draining:
        path.unlink(missing_ok=True)
        return None
    state = DrainState(
        since=datetime.now(UTC).isoformat(timespec="seconds"),
        user=_user(),
        host=socket.gethostname(),
        reason=reason,
    )
    fd, tmp = tempfile.mkstemp(prefix=".draining-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(state.__dict__, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return state


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
