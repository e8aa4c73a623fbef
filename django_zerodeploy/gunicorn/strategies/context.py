"""What every strategy shares: the context decided before any signal, the waits' intervals and
bounds, and the end of Gunicorn's log for a failure's output."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ... import proc as proc_mod
from ...osutil import last_lines
from ..master import Master
from ..probe import GunicornConfig
from ..result import PhaseRecorder, ReloadResult

# Between looks at a booting generation: each look costs ~2 ms of CPU, and a coarser interval
# adds up to itself to every wait of a reload (new master, workers ready, promotion).
POLL = 0.025
RETIRE_MARGIN = 15.0  # beyond graceful_timeout, for a master to finish exiting
REAP_WAIT = 5.0  # for an old master to reap a leftover it had made (its loop wakes every 1 s)
PROMOTION_WAIT = 15.0  # the new master checks its parent about once a second
ANNOUNCE_WAIT = 10.0
VERIFY_WAIT = 15.0  # hookless: for HEALTHZ_URL to report the new release
HOOKLESS_NOTE = (
    "Gunicorn runs without django_zerodeploy's hook: new workers count as ready once they "
    "enter Gunicorn's request loop, gated by the preflight. The hook adds a URLconf and smoke "
    "check in every worker, the release each one runs, and USR2 under systemd: add "
    "`from django_zerodeploy.gunicorn_conf import *` to gunicorn.conf.py (docs/reload.md)."
)


@dataclass
class ReloadContext:
    """Everything a strategy needs, decided before any signal."""

    master: Master
    config: GunicornConfig  # the checked-out configuration: what the next generation uses
    timeout: float
    expected_release: str  # the release the checkout holds ('' when unknown)
    unit: str | None
    recorder: PhaseRecorder
    strategy: str = ""
    hooked: bool = True  # the next generation runs our readiness hook (config.hooked)

    def result(self, ok: bool, code: int, message: str, **extra: object) -> ReloadResult:
        result = ReloadResult(
            ok=ok,
            exit_code=code,
            strategy=self.strategy,
            message=message,
            old_master_pid=self.master.pid,
            phases=self.recorder.phases,
            hooked=self.hooked,
        )
        for key, value in extra.items():
            setattr(result, key, value)
        return result

    def failure(self, code: int, message: str, log_of: Master, **extra: object) -> ReloadResult:
        """A failed reload, explained by the end of ``log_of``'s Gunicorn log."""
        return self.result(False, code, message, output=log_tail(log_of, self.config), **extra)


def log_tail(master: Master, config: GunicornConfig, lines: int = 12) -> str:
    """The end of Gunicorn's error log, to show why a generation failed."""
    path = (master.facts.errorlog if master.facts else None) or config.errorlog
    if not path:
        return ""
    return proc_mod.redact(last_lines(path, lines))


def wait_until(predicate: Callable[[], object], seconds: float) -> object:
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(POLL)
