"""System checks (Django's check framework): a bad ZERODEPLOY setting is reported with an id and
a hint at start-up, never as a traceback when a deploy is half done. In this package "checks"
alone means these; the /healthz/ ones are "health checks" and live in health/."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from .conf import validate
from .exit_codes import USAGE, CommandFailure
from .pipeline.steps import extra_steps_problem

_LEVELS = {"error": checks.Error, "warning": checks.Warning}


@checks.register(checks.Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Validate settings.ZERODEPLOY (unknown keys, types, values)."""
    return [
        _LEVELS[level](message, hint=hint, id=check_id)
        for level, check_id, message, hint in validate(
            getattr(settings, "ZERODEPLOY", None), {"EXTRA_STEPS": (extra_steps_problem,)}
        )
    ]


@checks.register(checks.Tags.compatibility)
def check_runtime_dir(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when the processes of this site could use different runtime directories (then two
    deploys can run at once and a reload waits for reports that never come)."""
    from .conf import app_settings
    from .runtime import problems

    try:
        configured, repo_dir = app_settings.RUNTIME_DIR, app_settings.deploy_root
    except Exception:  # noqa: BLE001 - a bad setting is check_settings' to report
        return []
    hint = (
        "Set ZERODEPLOY['RUNTIME_DIR'] to one directory every process of the site sees "
        "(deploys, Gunicorn, the qcluster), e.g. /run/zerodeploy-SITE from systemd's "
        "RuntimeDirectory= or a folder under /var/lib; see the security page of the docs."
    )
    return [
        checks.Warning(text, hint=hint, id="zerodeploy.W002")
        for text in problems(configured, repo_dir)
    ]


@checks.register(checks.Tags.compatibility)
def check_health_checks(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every ZERODEPLOY["HEALTH_CHECKS"] entry imports and builds: reported at start-up with
    an id instead of a 503 at the first probe."""
    from .conf import app_settings

    value = app_settings.HEALTH_CHECKS
    if value is not None and not isinstance(value, list | tuple):
        return []  # conf.validate reports the type (zerodeploy.E003)
    from .health.config import ConfigError, build_checks

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


def require_valid_settings() -> None:
    """Raise ``CommandFailure`` (exit code 2) listing every settings error.

    Django's own check run exits 1 on errors; commands whose documented exit code for bad
    configuration is 2 set ``requires_system_checks = []`` and call this instead.
    """
    errors = [m for m in check_settings() if m.level >= checks.ERROR]
    if errors:
        lines = [f"{m.id}: {m.msg}" + (f"\n    HINT: {m.hint}" if m.hint else "") for m in errors]
        raise CommandFailure("Bad ZERODEPLOY settings:\n" + "\n".join(lines), USAGE)
