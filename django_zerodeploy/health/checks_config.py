"""System check: every ZERODEPLOY["HEALTH_CHECKS"] entry imports and builds, reported at
start-up with an id instead of a 503 at the first probe. Imported by AppConfig.ready()."""

from __future__ import annotations

from typing import Any

from django.core import checks

from ..conf import app_settings


@checks.register(checks.Tags.compatibility)
def check_health_checks(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    value = app_settings.HEALTH_CHECKS
    if value is not None and not isinstance(value, list | tuple):
        return []  # conf.validate reports the type (zerodeploy.E003)
    from .config import ConfigError, build_checks

    try:
        build_checks()
    except ConfigError as exc:
        return [
            checks.Error(
                f"ZERODEPLOY['HEALTH_CHECKS'] {problem}",
                hint="See docs/healthz.md: an entry is a dotted path or a dict "
                "{'check': 'dotted.path', 'name': ..., 'critical': bool, 'timeout': seconds}.",
                id="zerodeploy.E040",
            )
            for problem in exc.problems
        ]
    return []
