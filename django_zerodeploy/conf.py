"""The one place that reads ``settings.ZERODEPLOY``.

Every key has a documented default here; ``checks.py`` validates the dict through Django's
system check framework so a bad value is an ``Error`` with an id, never a traceback at use.
Values are read on each access, so ``override_settings`` works in tests.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

RELOAD_STRATEGIES = ("usr2", "hup", "systemd")
STEP_NAMES = (
    "environment",
    "lock",
    "fetch",
    "prepare",
    "install",
    "preflight",
    "checkout",
    "migrate",
    "collectstatic",
    "smoke",
    "reload",
    "verify",
    "post_migrate",
)


@dataclass(frozen=True)
class Key:
    """One setting: its default, the types it accepts and what it means."""

    default: Any
    types: tuple[type, ...]
    doc: str
    choices: tuple[Any, ...] = ()


_NONE = type(None)

KEYS: dict[str, Key] = {
    "REPO_DIR": Key(None, (str, os.PathLike, _NONE), "Git checkout to deploy. Default: the git top level of settings.BASE_DIR."),
    "REMOTE": Key("origin", (str,), "Git remote to fetch from."),
    "BRANCH": Key(None, (str, _NONE), "Branch to deploy. Default: the upstream of the checked-out branch."),
    "REQUIREMENTS": Key("requirements.txt", (str, list, tuple), "Requirements file(s), relative to REPO_DIR."),
    "GUNICORN_PIDFILE": Key(None, (str, os.PathLike, _NONE), "Gunicorn master pidfile. Default: found with psutil."),
    "GUNICORN_SYSTEMD_UNIT": Key(None, (str, _NONE), "systemd unit that runs Gunicorn (MainPID is the master)."),
    "RELOAD_STRATEGY": Key("usr2", (str,), "How to reload Gunicorn: usr2, hup or systemd.", RELOAD_STRATEGIES),
    "RELOAD_TIMEOUT": Key(60, (int, float), "Seconds to wait for a new generation of workers to be ready."),
    "HEALTHZ_URL": Key(None, (str, _NONE), "URL of /healthz/ on this host, used to verify the release after a reload."),
    "SMOKE_URLS": Key([], (list, tuple), "Paths requested in-process before a release takes traffic; any 5xx refuses it."),
    "RUNTIME_DIR": Key(None, (str, os.PathLike, _NONE), "Where readiness files, locks and drain flags live (outside the repository)."),
    "RELEASE_ID": Key(None, (str, _NONE), "Release id to report when there is no .git (else a REVISION file, else git)."),
    "VERSION": Key(None, (str, _NONE), "Human version reported by /healthz/."),
    "EXTRA_STEPS": Key([], (list, tuple), "Extra commands: dicts {'name', 'after', 'command': [argv...]}."),
    "MIN_FREE_DISK_MB": Key(200, (int,), "Refuse to deploy with less free disk than this in REPO_DIR."),
    "STEP_TIMEOUT": Key(900, (int, float), "Seconds any one subprocess step may take."),
    "KEEP_OUTPUT_BYTES": Key(65536, (int,), "Tail of each step's output kept in the record."),
    "NOTIFY_ADMINS": Key(False, (bool,), "mail_admins() when a deploy fails."),
    "HEALTHZ_TOKEN": Key(None, (str, _NONE), "Bearer token that unlocks check details on /healthz/."),
    "HEALTHZ_PUBLIC_DETAILS": Key(False, (bool,), "Show check details to anonymous callers (not recommended)."),
    "HEALTHZ_CACHE_SECONDS": Key(1.0, (int, float), "Per-process cache of health results."),
    "HEALTHZ_CHECK_TIMEOUT": Key(2.0, (int, float), "Default timeout for each health check."),
    "HEALTH_CHECKS": Key(None, (list, tuple, _NONE), "Health checks to run. Default: the shipped ones."),
    "HEALTHZ_DISK_WARN_PERCENT": Key(90, (int, float), "Disk usage that makes the disk check warn."),
    "HEALTHZ_MEMORY_WARN_PERCENT": Key(90, (int, float), "Memory usage that makes the memory check warn."),
    "WEBHOOK_SECRET": Key(None, (str, _NONE), "Enables the deploy webhook; shared secret for signatures."),
    "WEBHOOK_PATH": Key("zerodeploy/webhook/", (str,), "Path of the webhook (under the include)."),
    "WEBHOOK_MAX_BYTES": Key(1_000_000, (int,), "Largest webhook body accepted."),
    "Q_CLUSTER_NAME": Key(None, (str, _NONE), "django-q2 cluster that runs this host's deploys (routing)."),
    "MIGRATION_LOCK_TIMEOUT": Key("5s", (str, int), "PostgreSQL lock_timeout for the migrate step."),
    "MIGRATION_STATEMENT_TIMEOUT": Key(0, (str, int), "PostgreSQL statement_timeout for the migrate step (0: none)."),
    "MIGRATION_RETRIES": Key(3, (int,), "Attempts of a migrate step that hit the lock timeout."),
}


class AppSettings:
    """Attribute access to ZERODEPLOY with defaults: ``app_settings.REMOTE``."""

    def __getattr__(self, name: str) -> Any:
        if name not in KEYS:
            raise AttributeError(name)
        user = getattr(settings, "ZERODEPLOY", None) or {}
        if name in user:
            return user[name]
        default = KEYS[name].default
        return list(default) if isinstance(default, list) else default

    @property
    def repo_dir(self) -> Path:
        """REPO_DIR, or the git top level above settings.BASE_DIR (no subprocess)."""
        configured = self.REPO_DIR
        if configured:
            return Path(configured).resolve()
        base = Path(getattr(settings, "BASE_DIR", os.getcwd())).resolve()
        for candidate in (base, *base.parents):
            if (candidate / ".git").exists():
                return candidate
        return base

    @property
    def requirements(self) -> list[str]:
        value = self.REQUIREMENTS
        return [value] if isinstance(value, str) else list(value)

    @property
    def runtime_dir(self) -> Path:
        """Host-local state, outside the checkout, one folder per checkout."""
        configured = self.RUNTIME_DIR
        if configured:
            path = Path(configured)
        else:
            root = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
            digest = hashlib.sha256(str(self.repo_dir).encode()).hexdigest()[:12]
            path = Path(root) / f"django-zerodeploy-{os.getuid()}" / digest
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path


app_settings = AppSettings()


def validate(user: Any) -> list[tuple[str, str, str, str]]:
    """Problems with a ZERODEPLOY value as (level, id, message, hint); used by the system check."""
    problems: list[tuple[str, str, str, str]] = []
    if user is None:
        return problems
    if not isinstance(user, dict):
        return [("error", "zerodeploy.E001", "ZERODEPLOY must be a dict.", "Set ZERODEPLOY = {...} in settings.")]
    for name in user:
        if name not in KEYS:
            close = [k for k in KEYS if k.startswith(str(name)[:4])]
            hint = f"Did you mean {close[0]}?" if close else "See the configuration table in the docs."
            problems.append(("error", "zerodeploy.E002", f"Unknown ZERODEPLOY key {name!r}.", hint))
    for name, key in KEYS.items():
        if name not in user:
            continue
        value = user[name]
        if isinstance(value, bool) and bool not in key.types:
            ok = False
        else:
            ok = isinstance(value, key.types)
        if not ok:
            wanted = " or ".join("None" if t is _NONE else t.__name__ for t in key.types)
            problems.append(("error", "zerodeploy.E003", f"ZERODEPLOY[{name!r}] must be {wanted}, not {type(value).__name__}.", key.doc))
            continue
        if key.choices and value not in key.choices:
            problems.append(("error", "zerodeploy.E004", f"ZERODEPLOY[{name!r}] is {value!r}; it must be one of {', '.join(key.choices)}.", key.doc))
        for check in _VALUE_CHECKS.get(name, ()):
            message = check(value)
            if message:
                problems.append(("error", "zerodeploy.E005", f"ZERODEPLOY[{name!r}]: {message}", key.doc))
    return problems


def _pidfile_ok(value: Any) -> str | None:
    if value and Path(value).is_dir():
        return f"{value} is a directory; give the path of Gunicorn's pidfile (gunicorn --pid PATH)."
    return None


def _dir_ok(value: Any) -> str | None:
    if value and Path(value).exists() and not Path(value).is_dir():
        return f"{value} exists and is not a directory."
    return None


def _positive(value: Any) -> str | None:
    return None if value is None or value >= 0 else "must not be negative."


def _smoke_ok(value: Any) -> str | None:
    bad = [u for u in value if not isinstance(u, str) or not u.startswith("/")]
    return f"paths must be strings starting with '/', got {bad!r}." if bad else None


def _extra_steps_ok(value: Any) -> str | None:
    for item in value:
        if not isinstance(item, dict) or not {"name", "after", "command"} <= set(item):
            return "each extra step is a dict with 'name', 'after' and 'command'."
        command = item["command"]
        if isinstance(command, str) or not all(isinstance(a, str) for a in command):
            return f"step {item.get('name')!r}: 'command' must be a list of strings (never a shell string)."
        if item["after"] not in STEP_NAMES:
            return f"step {item['name']!r}: 'after' must be one of {', '.join(STEP_NAMES)}."
    return None


def _requirements_ok(value: Any) -> str | None:
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or Path(item).is_absolute() or ".." in Path(item).parts:
            return f"{item!r} must be a path relative to REPO_DIR, inside it."
    return None


_VALUE_CHECKS: dict[str, tuple[Callable[[Any], str | None], ...]] = {
    "GUNICORN_PIDFILE": (_pidfile_ok,),
    "RUNTIME_DIR": (_dir_ok,),
    "REPO_DIR": (_dir_ok,),
    "RELOAD_TIMEOUT": (_positive,),
    "STEP_TIMEOUT": (_positive,),
    "MIN_FREE_DISK_MB": (_positive,),
    "HEALTHZ_CACHE_SECONDS": (_positive,),
    "HEALTHZ_CHECK_TIMEOUT": (_positive,),
    "SMOKE_URLS": (_smoke_ok,),
    "EXTRA_STEPS": (_extra_steps_ok,),
    "REQUIREMENTS": (_requirements_ok,),
}
