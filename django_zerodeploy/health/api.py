"""The check API: what a health check is, what it returns and how it says "warn".

A check is either a ``Check`` subclass or a plain callable. It returns what it observed (an
``Observation``, or a bare value) or raises. An exception means ``fail``; ``CheckWarning``
means ``warn``. The runner adds the timing, the timeout and the per-process cache, so a check
only does its one round trip.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail")


@dataclass(frozen=True)
class Observation:
    """What a check saw: ``observedValue``/``observedUnit`` in the draft's terms.

    ``status`` lets a check that ran fine still say ``warn`` (disk 93 % full) or ``fail``
    (3 unapplied migrations) with a value attached; ``output`` says why, to authorized callers.
    """

    value: Any = None
    unit: str | None = None
    status: Status = "pass"
    output: str = ""


class CheckWarning(Exception):
    """Raise from a check to report ``warn`` (with this message) instead of ``fail``."""


class Check:
    """A health check. Subclass it and implement ``check()``.

    Class attributes are the defaults; ``ZERODEPLOY["HEALTH_CHECKS"]`` dict entries override
    ``name``, ``critical``, ``timeout`` and ``cache_seconds`` per instance.
    """

    #: Key in the response's ``checks`` object: ``component:measurement``.
    name: str = "custom"
    #: Tells instances of one kind apart (a database alias); ``componentId`` in the response.
    component_id: str | None = None
    #: ``componentType`` in the response: "component", "datastore" or "system".
    component_type: str | None = None
    #: A failing critical check makes /healthz/ answer 503; a non-critical one only ``warn``.
    critical: bool = True
    #: Seconds before the probe stops waiting (None: ``HEALTHZ_CHECK_TIMEOUT``).
    timeout: float | None = None
    #: Seconds a *passing* result may be reused (None: ``HEALTHZ_CACHE_SECONDS``). Failing
    #: results are never kept longer than ``HEALTHZ_CACHE_SECONDS``.
    cache_seconds: float | None = None

    def __init__(
        self,
        *,
        name: str | None = None,
        component_id: str | None = None,
        critical: bool | None = None,
        timeout: float | None = None,
        cache_seconds: float | None = None,
    ) -> None:
        self.configure(
            name=name,
            component_id=component_id,
            critical=critical,
            timeout=timeout,
            cache_seconds=cache_seconds,
        )

    def configure(self, **overrides: Any) -> Check:
        """Set the given attributes on this instance; ``None`` leaves the default."""
        for attr, value in overrides.items():
            if value is not None:
                setattr(self, attr, value)
        return self

    def copy(self, **overrides: Any) -> Check:
        return copy.copy(self).configure(**overrides)

    @classmethod
    def expand(cls, **options: Any) -> list[Check]:
        """The instances a bare dotted path stands for (one per database alias, say)."""
        return [cls(**options)]

    @property
    def key(self) -> str:
        """Unique among the configured checks: name plus component id."""
        return f"{self.name}[{self.component_id}]" if self.component_id else self.name

    def prepare(self) -> None:
        """Called once per process before traffic (by the middleware at worker boot): pin
        whatever must describe the code this process loaded."""

    def check(self) -> Observation | Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}>"


class FunctionCheck(Check):
    """A plain callable used as a check; ``@health_check(...)`` metadata is read from it."""

    def __init__(self, func: Callable[[], Any], **overrides: Any) -> None:
        meta = dict(getattr(func, "health_check", {}))
        meta.setdefault("name", getattr(func, "__name__", "custom"))
        meta.update({k: v for k, v in overrides.items() if v is not None})
        self.func = func
        super().__init__(**meta)

    def check(self) -> Observation | Any:
        return self.func()


def health_check(
    name: str | None = None,
    *,
    critical: bool = True,
    timeout: float | None = None,
    cache_seconds: float | None = None,
    component_id: str | None = None,
) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Decorate a function to give it a name, criticality and timeout; it stays callable."""

    def decorate(func: Callable[[], Any]) -> Callable[[], Any]:
        func.health_check = {  # type: ignore[attr-defined]
            "name": name or func.__name__,
            "critical": critical,
            "timeout": timeout,
            "cache_seconds": cache_seconds,
            "component_id": component_id,
        }
        return func

    return decorate
