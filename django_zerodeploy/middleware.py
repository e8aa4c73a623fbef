"""Answer health probes before Django validates the Host header.

Load balancers probe with the instance IP as ``Host``, which ALLOWED_HOSTS rejects with 400.
Put this middleware first in MIDDLEWARE; every other path keeps Django's host validation.
The health views never call ``request.get_host()``, open a session or set a cookie.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, get_script_prefix, reverse

View = Callable[[HttpRequest], HttpResponse]


class HealthCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._paths: dict[str, dict[str, View]] = {}  # script prefix -> {path: view}
        from . import health

        # The worker is loading: pin what the checks must describe (the migration files of
        # the code this process runs) before the checkout can move under it.
        health.prepare()

    def _health_paths(self) -> dict[str, View]:
        prefix = get_script_prefix()
        paths = self._paths.get(prefix)
        if paths is None:
            from . import views

            paths = {}
            for name, view in (("healthz", views.healthz), ("healthz-live", views.liveness)):
                try:
                    paths[reverse(f"django_zerodeploy:{name}")] = view
                except NoReverseMatch:
                    pass
            self._paths[prefix] = paths
        return paths

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self._health_paths().get(request.path)
        if view is not None:
            return view(request)
        return self.get_response(request)
