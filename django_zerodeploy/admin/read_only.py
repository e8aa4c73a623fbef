"""The permissions every page of the console shares: deploys, hosts and rollouts are evidence."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from ..permissions import can_trigger


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
