"""Health checks behind /healthz/: the check API, the shipped checks, the runner with its
timeouts and per-process cache, and the host's drain flag. See docs/healthz.md."""

from __future__ import annotations

from .api import Check, CheckWarning, FunctionCheck, Observation, health_check
from .builtin import (
    DEFAULT_CHECKS,
    CacheCheck,
    DatabaseCheck,
    DiskCheck,
    DjangoQClusterCheck,
    DrainingCheck,
    MemoryCheck,
    MigrationsCheck,
)
from .config import ConfigError, build_checks
from .drain import DrainState, drain_state, is_draining, set_draining
from .report import CONTENT_TYPE, CheckResult, HealthReport
from .runner import get_report, prepare, reset, run_checks

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_CHECKS",
    "CacheCheck",
    "Check",
    "CheckResult",
    "CheckWarning",
    "ConfigError",
    "DatabaseCheck",
    "DiskCheck",
    "DjangoQClusterCheck",
    "DrainState",
    "DrainingCheck",
    "FunctionCheck",
    "HealthReport",
    "MemoryCheck",
    "MigrationsCheck",
    "Observation",
    "build_checks",
    "drain_state",
    "get_report",
    "health_check",
    "is_draining",
    "prepare",
    "reset",
    "run_checks",
    "set_draining",
]
