"""Answer health probes before Django validates the Host header.

Load balancers probe with the instance IP as ``Host``, which ALLOWED_HOSTS rejects with 400.
Put this middleware first in MIDDLEWARE; every other path keeps Django's host validation.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse


class HealthCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._paths: dict[str, Callable[[HttpRequest], HttpResponse]] | None = None

    def _health_paths(self) -> dict[str, Callable[[HttpRequest], HttpResponse]]:
        if self._paths is None:
            from . import views

            paths = {}
            for name, view in (("healthz", views.healthz), ("healthz-live", views.liveness)):
                try:
                    paths[reverse(f"django_zerodeploy:{name}")] = view
                except NoReverseMatch:
                    pass
            self._paths = paths
        return self._paths

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self._health_paths().get(request.path_info)
        if view is not None:
            return view(request)
        return self.get_response(request)
