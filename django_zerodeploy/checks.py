"""System checks: a bad ZERODEPLOY setting is reported with an id and a hint at start-up."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from .conf import validate

_LEVELS = {"error": checks.Error, "warning": checks.Warning}


@checks.register(checks.Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Validate settings.ZERODEPLOY (unknown keys, types, values)."""
    return [
        _LEVELS[level](message, hint=hint, id=check_id)
        for level, check_id, message, hint in validate(getattr(settings, "ZERODEPLOY", None))
    ]
