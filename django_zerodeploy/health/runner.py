"""Run the configured checks: each on its own lane with a deadline, results cached per
process for ``HEALTHZ_CACHE_SECONDS`` so any number of probes cost one round per window."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

from django.core.signals import setting_changed
from django.db import close_old_connections

from ..conf import app_settings
from ..proc import redact
from ..release import boot_release
from .api import STATUSES, Check, CheckWarning, Observation
from .config import ConfigError, build_checks
from .lanes import lane
from .report import CheckResult, HealthReport

logger = logging.getLogger("django_zerodeploy.health")
OUTPUT_LIMIT = 500


def execute(check: Check) -> CheckResult:
    """Run one check on the current thread; never raises. Called on the check's lane."""
    when = datetime.now(UTC)
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        observed = check.check()
        obs = observed if isinstance(observed, Observation) else Observation(observed)
        status, output = obs.status, obs.output
        if status not in STATUSES:
            status, output = "fail", f"the check returned status {status!r}"
    except CheckWarning as exc:
        obs, status, output = Observation(), "warn", str(exc)
    except Exception as exc:  # noqa: BLE001 - any exception is a failing check
        obs, status, error = Observation(), "fail", exc
        output = f"{type(exc).__name__}: {exc}"
    finally:
        # Like the end of a request: close connections this lane opened if they are broken
        # or past CONN_MAX_AGE, so a database that comes back is reconnected.
        try:
            close_old_connections()
        except Exception:  # noqa: BLE001
            logger.debug("closing connections after %s failed", check.key, exc_info=True)
    return _result(
        check, status, obs.value, obs.unit, output, when, time.perf_counter() - started, error
    )


def _result(
    check: Check,
    status: Any,
    value: Any,
    unit: str | None,
    output: str,
    when: datetime | None,
    duration: float,
    error: BaseException | None = None,
) -> CheckResult:
    return CheckResult(
        key=check.key,
        name=check.name,
        component_id=check.component_id,
        component_type=check.component_type,
        critical=check.critical,
        status=status,
        value=value,
        unit=unit,
        output=redact(output)[:OUTPUT_LIMIT] if output else "",
        time=when,
        duration=duration,
        monotonic=time.monotonic(),
        error=error,
    )


class HealthRunner:
    """The checks of this process and the latest report."""

    def __init__(self, checks: list[Check]) -> None:
        self.checks = checks
        self._lock = threading.RLock()  # one round at a time, whoever asks
        self._report: HealthReport | None = None
        self._previous: dict[str, CheckResult] = {}

    def report(self, max_age: float | None = None) -> HealthReport:
        """The cached report if younger than ``max_age`` (default HEALTHZ_CACHE_SECONDS)."""
        if max_age is None:
            max_age = float(app_settings.HEALTHZ_CACHE_SECONDS)
        report = self._report
        if report is not None and time.monotonic() - report.created < max_age:
            return report
        with self._lock:  # one round at a time; those who waited reuse it
            report = self._report
            if report is not None and time.monotonic() - report.created < max_age:
                return report
            report = self.run_round()
            self._report = report
            return report

    def run_round(self, fresh: bool = False) -> HealthReport:
        """Run every check once, in parallel; returns within the largest timeout.

        ``fresh`` ignores the longer per-check reuse (``Check.cache_seconds``)."""
        with self._lock:
            return self._run_round(fresh)

    def _run_round(self, fresh: bool) -> HealthReport:
        started = time.monotonic()
        default_timeout = float(app_settings.HEALTHZ_CHECK_TIMEOUT)
        results: dict[str, CheckResult] = {}
        waiting = []
        for check in self.checks:
            timeout = float(check.timeout or default_timeout)
            previous = self._previous.get(check.key)
            if (
                not fresh
                and previous is not None
                and previous.status == "pass"
                and check.cache_seconds
                and started - previous.monotonic < check.cache_seconds
            ):
                results[check.key] = previous
                continue
            check_lane = lane(check.key)
            if check_lane.busy_since() is not None:
                # Still stuck in an earlier round: answer now instead of waiting again.
                results[check.key] = _result(
                    check,
                    "fail",
                    None,
                    None,
                    f"still running from an earlier round (timeout {timeout:g} s)",
                    datetime.now(UTC),
                    0.0,
                )
                continue
            waiting.append((check, timeout, check_lane.submit(partial(execute, check))))
        for check, timeout, future in waiting:
            try:
                result = future.result(timeout=max(0.0, started + timeout - time.monotonic()))
            except TimeoutError:
                result = _result(
                    check,
                    "fail",
                    None,
                    None,
                    f"did not answer within {timeout:g} s",
                    datetime.now(UTC),
                    timeout,
                )
            except BaseException as exc:  # noqa: BLE001 - SystemExit and friends from a check
                result = _result(
                    check,
                    "fail",
                    None,
                    None,
                    f"{type(exc).__name__}: {exc}",
                    datetime.now(UTC),
                    0.0,
                    exc if isinstance(exc, Exception) else None,
                )
            results[check.key] = result
        ordered = [results[c.key] for c in self.checks]
        self._log_changes(ordered)
        self._previous = {r.key: r for r in ordered}
        return HealthReport(ordered, boot_release(), app_settings.VERSION, time.monotonic())

    def _log_changes(self, results: list[CheckResult]) -> None:
        """Log a check when its status or message changes, not on every round."""
        for result in results:
            before = self._previous.get(result.key)
            if before is result:
                continue
            if result.status == "pass":
                if before is not None and before.status != "pass":
                    logger.warning("health check %s passes again", result.key)
                continue
            if before is not None and (before.status, before.output) == (
                result.status,
                result.output,
            ):
                continue
            level = logging.ERROR if result.blocks_traffic else logging.WARNING
            error = result.error
            exc_info = (type(error), error, error.__traceback__) if error is not None else None
            logger.log(
                level,
                "health check %s: %s: %s",
                result.key,
                result.status,
                result.output,
                exc_info=exc_info,
            )


class _BrokenHealthRunner:
    """Stands in when HEALTH_CHECKS cannot be built: every probe fails, the log says why once."""

    def __init__(self, error: ConfigError) -> None:
        self.error = error
        self.checks: list[Check] = []
        logger.error("health checks are misconfigured: %s", error)

    def report(self, max_age: float | None = None) -> HealthReport:
        return self.run_round()

    def run_round(self, fresh: bool = False) -> HealthReport:
        message = "HEALTH_CHECKS is misconfigured: " + "; ".join(self.error.problems)
        return HealthReport(
            [], boot_release(), app_settings.VERSION, time.monotonic(), error=message
        )


_runner: HealthRunner | _BrokenHealthRunner | None = None
_runner_lock = threading.Lock()


def get_runner() -> HealthRunner | _BrokenHealthRunner:
    global _runner
    runner = _runner
    if runner is None:
        with _runner_lock:
            runner = _runner
            if runner is None:
                try:
                    runner = HealthRunner(build_checks())
                except ConfigError as exc:
                    runner = _BrokenHealthRunner(exc)
                _runner = runner
    return runner


def reset() -> None:
    """Forget the built checks and cached results (settings changed, or a test starts)."""
    global _runner
    with _runner_lock:
        _runner = None


def _on_setting_changed(setting: str, **kwargs: Any) -> None:
    if setting in ("ZERODEPLOY", "DATABASES", "CACHES", "INSTALLED_APPS"):
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="django_zerodeploy.health.reset")


def get_report(max_age: float | None = None) -> HealthReport:
    """The report /healthz/ serves: cached for HEALTHZ_CACHE_SECONDS in this process."""
    return get_runner().report(max_age)


def run_checks() -> HealthReport:
    """A fresh round, ignoring every cache (the ``healthz`` command, benchmarks)."""
    return get_runner().run_round(fresh=True)


def prepare() -> None:
    """Build the checks and let each pin what it needs, before this process takes traffic.

    Called by the middleware when a worker loads; never raises (a probe will report it)."""
    try:
        for check in get_runner().checks:
            try:
                check.prepare()
            except Exception:  # noqa: BLE001
                logger.exception("preparing health check %s failed", check.key)
    except Exception:  # noqa: BLE001
        logger.exception("preparing health checks failed")
