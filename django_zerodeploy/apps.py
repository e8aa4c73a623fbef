"""App configuration: registers system checks and records the release this process booted."""

from __future__ import annotations

from django.apps import AppConfig, apps


class ZeroDeployConfig(AppConfig):
    name = "django_zerodeploy"
    verbose_name = "Deployments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers the system checks, HEALTH_CHECKS' too)
            release,
        )
        from .tasks import cluster_checks  # noqa: F401  (Q_CLUSTER warnings)

        # Pin the release now, at boot: /healthz/ must report what this process loaded,
        # not whatever the checkout holds later.
        release.boot_release()
        if apps.is_installed("django_q"):
            from .rollout import hosts

            hosts.connect()  # each running cluster registers its host (the rollout registry)
