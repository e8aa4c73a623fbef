"""Health views: readiness (``/healthz/``) and liveness (``/healthz/live/``).

Both are reached through HealthCheckMiddleware before host validation, sessions and CSRF, and
answer GET and HEAD only. Anonymous callers see ``status``, ``releaseId`` and ``version``;
check details need the bearer token or a staff session (see health.access).
"""

from __future__ import annotations

import json
import logging

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

from . import health
from .conf import app_settings
from .health.access import details_lookup
from .release import boot_release

logger = logging.getLogger("django_zerodeploy.health")
ALLOWED = ("GET", "HEAD")


def healthz(request: HttpRequest) -> HttpResponse:
    """200 when every critical check passes (status pass or warn), 503 otherwise."""
    if request.method not in ALLOWED:
        return HttpResponseNotAllowed(ALLOWED)
    may_see = details_lookup(request)  # a session lookup runs alongside the checks
    try:
        report = health.get_report()
        body, status = report.render(may_see()), report.http_status
    except Exception as exc:  # noqa: BLE001 - never a traceback on a probe
        logger.exception("/healthz/ could not produce a report")
        data = {"status": "fail", "releaseId": boot_release()}
        if may_see():
            data["output"] = f"{type(exc).__name__} (see the server log)"
        body, status = json.dumps(data).encode(), 503
    return _respond(request, body, status)


def liveness(request: HttpRequest) -> HttpResponse:
    """200 whenever this process can answer: no dependency is consulted."""
    if request.method not in ALLOWED:
        return HttpResponseNotAllowed(ALLOWED)
    data = {"status": "pass"}
    if app_settings.VERSION:
        data["version"] = app_settings.VERSION
    data["releaseId"] = boot_release()
    return _respond(request, json.dumps(data, separators=(",", ":")).encode(), 200)


def _respond(request: HttpRequest, body: bytes, status: int) -> HttpResponse:
    response = HttpResponse(
        b"" if request.method == "HEAD" else body, status=status, content_type=health.CONTENT_TYPE
    )
    response["Content-Length"] = str(len(body))  # HEAD: what GET would send
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
