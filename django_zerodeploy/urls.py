"""URLs to include at the site root: ``path("", include("django_zerodeploy.urls"))``."""

from django.urls import path

from . import views, webhooks
from .conf import app_settings

app_name = "django_zerodeploy"

urlpatterns = [
    path("healthz/", views.healthz, name="healthz"),
    path("healthz/live/", views.liveness, name="healthz-live"),
    # The deploy webhook answers 404 unless WEBHOOK_SECRET is set (checked per request).
    path(app_settings.WEBHOOK_PATH.lstrip("/"), webhooks.webhook, name="webhook"),
]
