"""Health views (the healthz issue fills these in)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from .release import boot_release


def liveness(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "pass", "releaseId": boot_release()}, content_type="application/health+json")


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "pass", "releaseId": boot_release()}, content_type="application/health+json")
