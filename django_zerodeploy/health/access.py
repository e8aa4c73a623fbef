"""Who may see check details: a bearer token, a staff session, or everyone if configured.

Probes carry neither, so the common case costs one header lookup and no database query. A
session cookie is read, never written: no Set-Cookie and no session save on a health path; the
lookup is bounded like a check (``details_lookup``).
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from importlib import import_module
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import close_old_connections
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject, empty

from ..conf import app_settings
from .lanes import lane

logger = logging.getLogger("django_zerodeploy.health")
# What Django's session stores make (SessionBase._get_new_session_key): 32 of [a-z0-9]
_DJANGO_SESSION_KEY = re.compile(r"[a-z0-9]{32}")
SESSION_LANE = "access:session"


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
    return details_lookup(request)()


def details_lookup(request: HttpRequest) -> Callable[[], bool]:
    """Start deciding whether ``request`` may see check details; the returned function gives
    the answer, waiting at most HEALTHZ_CHECK_TIMEOUT from now. The view calls it after the
    checks, so a staff session lookup runs alongside them, bounded like one.

    Anonymous-looking probes (no session cookie, or one no Django session store makes) never
    touch the session store. A lookup runs on its own lane: a hung store or database holds
    that lane only, and while one lookup is overdue the next probes are anonymous at once."""
    if app_settings.HEALTHZ_PUBLIC_DETAILS or bearer_token_ok(request):
        return lambda: True
    user = getattr(request, "user", None)  # set when reached through AuthenticationMiddleware
    if user is not None and _evaluated(user):
        return lambda: _staff(user)
    key = _session_key(request)
    if key is None:
        return lambda: False
    timeout = float(app_settings.HEALTHZ_CHECK_TIMEOUT)
    worker = lane(SESSION_LANE)
    since = worker.busy_since()
    if since is not None and time.monotonic() - since > timeout:
        return lambda: False
    future = worker.submit(partial(_staff_from_session, key))
    deadline = time.monotonic() + timeout

    def answer() -> bool:
        try:
            return bool(future.result(max(0.0, deadline - time.monotonic())))
        except FutureTimeout:
            logger.warning("the session lookup on a health path took over %g s", timeout)
        except Exception:  # noqa: BLE001 - a broken session store must not break the probe
            logger.warning("could not read the session on a health path", exc_info=True)
        return False

    return answer


def _evaluated(user: Any) -> bool:
    """Whether ``request.user`` is already loaded. AuthenticationMiddleware sets a lazy object
    whose first use loads the session and the user on this thread, unbounded (a health path
    reached without HealthCheckMiddleware first): that lookup goes to the lane instead."""
    return not isinstance(user, SimpleLazyObject) or user._wrapped is not empty


def _session_key(request: HttpRequest) -> str | None:
    """The session cookie when it could name a session, else None (no lookup)."""
    if not (
        apps.is_installed("django.contrib.sessions") and apps.is_installed("django.contrib.auth")
    ):
        return None
    key = request.COOKIES.get(settings.SESSION_COOKIE_NAME) or ""
    if settings.SESSION_ENGINE.endswith("signed_cookies"):
        return key or None  # the cookie is the session; only the user lookup queries
    return key if _DJANGO_SESSION_KEY.fullmatch(key) else None


def _staff_from_session(key: str) -> bool:
    """On the session lane: load the session read-only and its user."""
    from django.contrib.auth import get_user

    try:
        store = import_module(settings.SESSION_ENGINE).SessionStore(key)
        probe = HttpRequest()
        probe.session = _ReadOnlySession(store.load())  # type: ignore[attr-defined]
        return _staff(get_user(probe))  # type: ignore[arg-type]
    finally:
        close_old_connections()


def _staff(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))


class _ReadOnlySession(dict[str, Any]):
    """Session data for get_user(); its flush/cycle_key are no-ops, so nothing is written."""

    def flush(self) -> None:
        self.clear()

    def cycle_key(self) -> None:
        pass
