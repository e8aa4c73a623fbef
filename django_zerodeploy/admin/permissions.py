"""Who may do what in the console: one rule for who may start deploys (``can_trigger``), which
the views ask, and the read-only admin every page shares (deploys, hosts and rollouts are
evidence). Its own module so that the pages import it one way (none imports another for it).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

TRIGGER_PERMISSION = "django_zerodeploy.trigger_deploy"


def can_trigger(request: HttpRequest) -> bool:
    """Only users granted ``trigger_deploy`` (superusers have every permission)."""
    return bool(
        request.user.is_active
        and request.user.is_staff
        and request.user.has_perm(TRIGGER_PERMISSION)
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records are evidence: nobody adds or edits them here, only superusers delete them, and
    whoever may start deploys may also read them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or can_trigger(request)
