"""Turn ``ZERODEPLOY["HEALTH_CHECKS"]`` into Check instances, or say exactly what is wrong.

An entry is a dotted path (to a Check subclass, a Check instance, a function, or a list of
entries such as ``django_zerodeploy.health.DEFAULT_CHECKS``) or a dict::

    {"check": "dotted.path", "name": "search:responseTime", "critical": False,
     "timeout": 1.5, "cache_seconds": 10, "options": {...}}

``options`` are keyword arguments for a Check subclass (``{"alias": "replica"}``).
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from ..conf import app_settings
from .api import Check, FunctionCheck
from .builtin import DEFAULT_CHECKS, DrainingCheck

DICT_KEYS = frozenset(
    {"check", "name", "critical", "timeout", "cache_seconds", "options", "component_id"}
)
MAX_DEPTH = 5


class ConfigError(Exception):
    """One or more HEALTH_CHECKS entries cannot be used; ``problems`` lists them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def configured_entries() -> list[Any]:
    value = app_settings.HEALTH_CHECKS
    return list(DEFAULT_CHECKS if value is None else value)


def build_checks(entries: list[Any] | None = None) -> list[Check]:
    """The checks to run, drain check always included; raises ConfigError listing problems."""
    entries = configured_entries() if entries is None else entries
    built: list[Check] = []
    problems: list[str] = []
    for index, entry in enumerate(entries):
        try:
            built.extend(_build(entry, 0))
        except ConfigError as exc:
            problems.extend(f"entry {index} ({_label(entry)}): {p}" for p in exc.problems)
    if not any(isinstance(c, DrainingCheck) for c in built):
        built.append(DrainingCheck())
    seen: set[str] = set()
    for check in built:
        if check.key in seen:
            problems.append(f"two checks are named {check.key!r}; give one a different 'name'.")
        seen.add(check.key)
    if problems:
        raise ConfigError(problems)
    return built


def _label(entry: Any) -> str:
    if isinstance(entry, dict):
        return repr(entry.get("check"))
    return repr(entry) if isinstance(entry, str) else type(entry).__name__


def _build(entry: Any, depth: int) -> list[Check]:
    if depth > MAX_DEPTH:
        raise ConfigError(["lists of checks nest too deeply."])
    if isinstance(entry, str):
        return _instantiate(_import(entry), {}, {}, depth)
    if isinstance(entry, dict):
        options, overrides = _parse_dict(entry)
        return _instantiate(_import(entry["check"]), options, overrides, depth)
    if isinstance(entry, Check):
        return [entry]
    if callable(entry) and not isinstance(entry, type):
        return [FunctionCheck(entry)]
    raise ConfigError(["an entry is a dotted path string or a dict with a 'check' key."])


def _import(path: Any) -> Any:
    if not isinstance(path, str) or "." not in path:
        raise ConfigError([f"{path!r} is not a dotted path like 'myproject.health.search'."])
    try:
        return import_string(path)
    except ImportError as exc:
        raise ConfigError([f"cannot import {path!r}: {exc}"]) from exc


def _parse_dict(entry: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    problems = []
    unknown = sorted(set(entry) - DICT_KEYS)
    if unknown:
        problems.append(f"unknown keys {unknown}; allowed: {sorted(DICT_KEYS)}.")
    if "check" not in entry:
        problems.append("a dict entry needs 'check': 'dotted.path'.")
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        problems.append("'name' must be a non-empty string like 'search:responseTime'.")
    component_id = entry.get("component_id")
    if component_id is not None and not isinstance(component_id, str):
        problems.append("'component_id' must be a string.")
    if "critical" in entry and not isinstance(entry["critical"], bool):
        problems.append("'critical' must be True or False.")
    for key, low in (("timeout", 0.0), ("cache_seconds", -1e-12)):
        value = entry.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= low
        ):
            problems.append(
                f"{key!r} must be a positive number of seconds."
                if key == "timeout"
                else f"{key!r} must be a number of seconds, 0 or more."
            )
    options = entry.get("options", {})
    if not isinstance(options, dict):
        problems.append("'options' must be a dict of keyword arguments.")
    if problems:
        raise ConfigError(problems)
    overrides = {
        k: entry.get(k) for k in ("name", "critical", "timeout", "cache_seconds", "component_id")
    }
    return options, overrides


def _instantiate(
    target: Any, options: dict[str, Any], overrides: dict[str, Any], depth: int
) -> list[Check]:
    if isinstance(target, list | tuple):
        if options or any(v is not None for v in overrides.values()):
            raise ConfigError(
                ["a list of checks takes no options or overrides; configure its entries."]
            )
        made: list[Check] = []
        for item in target:
            made.extend(_build(item, depth + 1))
        return made
    if isinstance(target, type):
        if not issubclass(target, Check):
            raise ConfigError(
                [f"{target.__qualname__} is a class but not a django_zerodeploy.health.Check."]
            )
        try:
            checks = target.expand(**options)
        except TypeError as exc:
            raise ConfigError([f"bad options for {target.__qualname__}: {exc}"]) from exc
        return [c.configure(**overrides) for c in checks]
    if options:
        raise ConfigError(["'options' apply to Check classes only."])
    if isinstance(target, Check):
        return [target.copy(**overrides)]
    if callable(target):
        return [FunctionCheck(target, **overrides)]
    raise ConfigError(
        [f"{type(target).__name__} is neither a check, a callable nor a list of checks."]
    )
