"""Apply one stage of the plan, one migration at a time, with PostgreSQL lock timeouts.

An ``ALTER TABLE`` that waits for its lock behind a long transaction queues every later
query on that table behind itself: the site stalls although nothing is "down". With
``lock_timeout`` the migration gives up after a few seconds instead, the stall is bounded,
and the attempt is retried with backoff a bounded number of times.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.signals import connection_created

from ..conf import app_settings
from ..exit_codes import USAGE, CommandFailure
from .plan import classify_pending
from .verdict import POST, PRE

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL SQLSTATE of lock_timeout
QUERY_CANCELED = "57014"  # PostgreSQL SQLSTATE of statement_timeout
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, None: 1000}


@dataclass
class ApplyResult:
    stage: str
    applied: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)  # migration -> attempts it took
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def parse_duration_ms(value: Any, name: str) -> int:
    """Milliseconds from 5, 2.5, "5", "5s", "500ms", "1min"; numbers without a unit are seconds.

    (PostgreSQL itself reads a bare number as milliseconds; settings that are off by 1000x
    would be a silent trap, so a bare number here always means seconds.)
    """
    if isinstance(value, bool):
        raise CommandFailure(f"{name} must be a duration such as '5s', not {value!r}.", USAGE)
    if isinstance(value, (int, float)):
        if value < 0:
            raise CommandFailure(f"{name} must not be negative.", USAGE)
        return int(value * 1000)
    match = _DURATION.match(str(value))
    if not match:
        raise CommandFailure(
            f"{name} must be a duration such as 5, '5s', '500ms' or '1min', not {value!r}.", USAGE
        )
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def error_sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a database error (psycopg 3 ``sqlstate``, psycopg2 ``pgcode``)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if code:
            return str(code)
        exc = exc.__cause__ or exc.__context__
    return None


class _Timeouts:
    """Sets lock_timeout/statement_timeout on the connection now and on every reconnection."""

    def __init__(self, database: str, lock_ms: int, statement_ms: int) -> None:
        self.database, self.lock_ms, self.statement_ms = database, lock_ms, statement_ms

    def apply(self, connection: Any) -> None:
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            # ints only: nothing from outside reaches the SQL text
            cursor.execute(f"SET lock_timeout = {int(self.lock_ms)}")
            cursor.execute(f"SET statement_timeout = {int(self.statement_ms)}")

    def _on_connect(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.alias == self.database:
            self.apply(connection)

    def __enter__(self) -> _Timeouts:
        connection_created.connect(self._on_connect, dispatch_uid=f"zerodeploy-timeouts-{id(self)}")
        connection = connections[self.database]
        if connection.connection is not None:
            self.apply(connection)
        return self

    def __exit__(self, *exc: object) -> None:
        connection_created.disconnect(dispatch_uid=f"zerodeploy-timeouts-{id(self)}")


def apply_stage(
    stage: str,
    *,
    database: str = DEFAULT_DB_ALIAS,
    lock_timeout: Any = None,
    statement_timeout: Any = None,
    retries: int | None = None,
    backoff: float = 1.0,
    on_applied: Callable[[str], None] | None = None,
    on_retry: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ApplyResult:
    """Apply the pending migrations of ``stage`` ("pre": all not marked post-deploy; "post":
    the rest), in plan order. Never raises for a failed migration: see ``ApplyResult.error``."""
    if stage not in (PRE, POST):
        raise CommandFailure(f"--stage must be 'pre' or 'post', not {stage!r}.", USAGE)
    lock_ms = parse_duration_ms(
        app_settings.MIGRATION_LOCK_TIMEOUT if lock_timeout is None else lock_timeout,
        "lock timeout",
    )
    statement_ms = parse_duration_ms(
        app_settings.MIGRATION_STATEMENT_TIMEOUT
        if statement_timeout is None
        else statement_timeout,
        "statement timeout",
    )
    attempts = app_settings.MIGRATION_RETRIES if retries is None else retries
    if not isinstance(attempts, int) or attempts < 1:
        raise CommandFailure(
            f"retries must be a whole number of attempts, at least 1, not {attempts!r}.", USAGE
        )
    plan = classify_pending(database, allow_unsafe=True)
    result = ApplyResult(stage)
    if stage == PRE and plan.errors:
        result.error = "Not migrating: " + " ".join(plan.errors)
        return result
    todo = plan.pre if stage == PRE else plan.pending
    with _Timeouts(database, lock_ms, statement_ms):
        for migration in todo:
            error = _apply_one(
                migration.app,
                migration.name,
                database,
                attempts,
                backoff,
                lock_ms,
                result,
                sleep,
                on_retry,
            )
            if error:
                done = ", ".join(result.applied) or "none"
                result.error = f"{error} Applied before the failure: {done}."
                return result
            result.applied.append(migration.label)
            if on_applied:
                on_applied(migration.label)
    return result


def _apply_one(
    app: str,
    name: str,
    database: str,
    attempts: int,
    backoff: float,
    lock_ms: int,
    result: ApplyResult,
    sleep: Callable[[float], None],
    on_retry: Callable[[str], None] | None,
) -> str:
    """Migrate to one migration; '' on success, else one readable sentence."""
    label = f"{app}.{name}"
    connection = connections[database]
    for attempt in range(1, attempts + 1):
        result.attempts[label] = attempt
        try:
            call_command(
                "migrate",
                app,
                name,
                database=database,
                interactive=False,
                verbosity=0,
                stdout=io.StringIO(),
                stderr=io.StringIO(),
            )
            return ""
        except Exception as exc:  # noqa: BLE001 - every failure becomes one readable message
            code = error_sqlstate(exc)
            connection.close()  # a clean session for the next attempt (timeouts are set again)
            if code == LOCK_NOT_AVAILABLE:
                if not _atomic(app, name, database):
                    return (
                        f"{label} hit lock_timeout ({lock_ms} ms) and is not atomic, so it is not "
                        "retried: check which of its operations ran before applying it again."
                    )
                if attempt < attempts:
                    delay = min(backoff * 2 ** (attempt - 1), 30.0)
                    if on_retry:
                        on_retry(
                            f"{label} hit lock_timeout ({lock_ms} ms), attempt {attempt} of {attempts}; "
                            f"retrying in {delay:g} s"
                        )
                    sleep(delay)
                    continue
                return (
                    f"{label} could not take its lock within lock_timeout ({lock_ms} ms) in "
                    f"{attempts} attempt(s): a long transaction holds a lock on its table (see "
                    "pg_stat_activity and pg_locks). Nothing of it was applied."
                )
            if code == QUERY_CANCELED:
                return f"{label} ran longer than statement_timeout and was cancelled: {_first_line(exc)}"
            return f"{label} failed: {type(exc).__name__}: {_first_line(exc)}"
    return f"{label} failed."  # not reached: the loop returns


def _atomic(app: str, name: str, database: str) -> bool:
    from django.db.migrations.loader import MigrationLoader

    connection = connections[database]
    migration = MigrationLoader(connection).graph.nodes.get((app, name))
    return bool(getattr(migration, "atomic", True)) and connection.features.can_rollback_ddl


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
