from django.contrib import admin
from django.urls import include, path
from notes import views

urlpatterns = [
    path("", views.home, name="home"),
    path("notes/", views.notes, name="notes"),
    path("slow/", views.slow, name="slow"),
    path("admin/", admin.site.urls),
    path("", include("django_zerodeploy.urls")),
]
