"""Who may see check details: a bearer token, a staff session, or everyone if configured.

Probes carry neither, so the common case costs one header lookup and no database query. A
session cookie is read, never written: no Set-Cookie and no session save on a health path.
"""

from __future__ import annotations

import hmac
import logging
from importlib import import_module
from typing import Any

from django.apps import apps
from django.conf import settings
from django.http import HttpRequest

from ..conf import app_settings

logger = logging.getLogger("django_zerodeploy.health")


def bearer_token_ok(request: HttpRequest) -> bool:
    """``Authorization: Bearer <HEALTHZ_TOKEN>``, compared in constant time."""
    expected = app_settings.HEALTHZ_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not expected or not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), str(expected).encode())


def can_see_details(request: HttpRequest) -> bool:
    if app_settings.HEALTHZ_PUBLIC_DETAILS or bearer_token_ok(request):
        return True
    try:
        return _is_staff(request)
    except Exception:  # noqa: BLE001 - a broken session store must not break the probe
        logger.warning("could not read the session on a health path", exc_info=True)
        return False


def _is_staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)  # set when reached through AuthenticationMiddleware
    if user is None:
        if not (
            apps.is_installed("django.contrib.sessions")
            and apps.is_installed("django.contrib.auth")
        ):
            return False
        session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        if not session_key:
            return False
        from django.contrib.auth import get_user

        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        probe = HttpRequest()
        probe.session = _ReadOnlySession(store.load())  # type: ignore[attr-defined]
        user = get_user(probe)  # type: ignore[arg-type]
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))


class _ReadOnlySession(dict[str, Any]):
    """Session data for get_user(); its flush/cycle_key are no-ops, so nothing is written."""

    def flush(self) -> None:
        self.clear()

    def cycle_key(self) -> None:
        pass
