"""What a reload did, phase by phase, for people (one line per phase) and machines (JSON)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# The phases a reload records, in the order they can happen (a reload records a subset).
LOCK = "lock"
PREFLIGHT = "preflight"
FOUND_MASTER = "found master"
READINESS = "readiness"
STRATEGY = "strategy"
REFUSED = "refused"
CLEANUP = "cleanup"
SIGNAL = "signal"
NEW_MASTER = "new master"
NEW_GENERATION_READY = "new generation ready"
SYSTEMD = "systemd"
# the old master was told to stop: from here only the new generation takes requests
OLD_RETIRED = "old retired"
PROMOTED = "promoted"
VERIFY = "verify"
ABORTED = "aborted"


@dataclass
class Phase:
    name: str
    seconds: float
    detail: str = ""

    def line(self) -> str:
        return (
            f"{self.name}: {self.detail} [{self.seconds:.2f} s]"
            if self.detail
            else (f"{self.name} [{self.seconds:.2f} s]")
        )


@dataclass
class ReloadResult:
    ok: bool
    exit_code: int
    strategy: str
    message: str
    old_master_pid: int | None = None
    new_master_pid: int | None = None
    release: str | None = None
    workers_ready: int = 0
    workers_expected: int = 0
    phases: list[Phase] = field(default_factory=list)
    output: str = ""  # log or traceback lines that explain a failure, redacted
    duration: float = 0.0
    hooked: bool = True  # False: readiness was observed from outside (no django_zerodeploy hook)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def seconds_until(self, phase: str, *, through: bool = False) -> float:
        """Seconds from the start of the reload to the start of ``phase`` (its end with
        ``through``); the whole duration when the reload never reached it."""
        elapsed = 0.0
        for recorded in self.phases:
            if recorded.name == phase:
                return elapsed + recorded.seconds if through else elapsed
            elapsed += recorded.seconds
        return self.duration


class PhaseRecorder:
    """Times phases and echoes one line per phase as it ends."""

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        self.echo = echo
        self.phases: list[Phase] = []
        self.started = time.monotonic()
        self._mark = self.started

    def phase(self, name: str, detail: str = "") -> Phase:
        now = time.monotonic()
        phase = Phase(name, round(now - self._mark, 3), detail)
        self._mark = now
        self.phases.append(phase)
        if self.echo:
            self.echo(phase.line())
        return phase

    @property
    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)
