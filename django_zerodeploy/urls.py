"""URLs to include at the site root: ``path("", include("django_zerodeploy.urls"))``."""

from django.urls import path

from . import views

app_name = "django_zerodeploy"

urlpatterns = [
    path("healthz/", views.healthz, name="healthz"),
    path("healthz/live/", views.liveness, name="healthz-live"),
]
