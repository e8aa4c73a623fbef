"""The drain flag: a file in this host's runtime directory.

A file, not a database row, so draining one host before maintenance leaves the other hosts
that share the database in the pool. Every worker of every Gunicorn on this host that uses the
same runtime directory reads it on each round of checks.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..conf import app_settings
from ..exit_codes import CommandFailure
from ..osutil import os_user, write_json_atomic

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
    """The flag's path. Raises CommandFailure (exit 2) when the runtime directory is unusable:
    the drain check then fails, since it cannot tell whether this host drains."""
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
    try:
        path = flag_path()
    except CommandFailure as exc:
        raise CommandFailure(f"Cannot change the drain flag: {exc.message}", exc.exit_code) from exc
    if not draining:
        path.unlink(missing_ok=True)
        return None
    state = DrainState(
        since=datetime.now(UTC).isoformat(timespec="seconds"),
        user=os_user(),
        host=socket.gethostname(),
        reason=reason,
    )
    write_json_atomic(path, asdict(state))
    return state
