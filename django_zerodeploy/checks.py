"""System checks: a bad ZERODEPLOY setting is reported with an id and a hint at start-up,
never as a traceback when a deploy is half done."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from .conf import validate
from .exit_codes import USAGE, CommandFailure

_LEVELS = {"error": checks.Error, "warning": checks.Warning}


@checks.register(checks.Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Validate settings.ZERODEPLOY (unknown keys, types, values)."""
    return [
        _LEVELS[level](message, hint=hint, id=check_id)
        for level, check_id, message, hint in validate(getattr(settings, "ZERODEPLOY", None))
    ]


def require_valid_settings() -> None:
    """Raise ``CommandFailure`` (exit code 2) listing every settings error.

    Django's own check run exits 1 on errors; commands whose documented exit code for bad
    configuration is 2 set ``requires_system_checks = []`` and call this instead.
    """
    errors = [m for m in check_settings() if m.level >= checks.ERROR]
    if errors:
        lines = [f"{m.id}: {m.msg}" + (f"\n    HINT: {m.hint}" if m.hint else "") for m in errors]
        raise CommandFailure("Bad ZERODEPLOY settings:\n" + "\n".join(lines), USAGE)
