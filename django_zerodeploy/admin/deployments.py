"""The deploy console in the Django admin: history, live progress, deploy and roll back.

Records are evidence, so nobody adds or edits them here; only superusers may delete them.
Starting a deploy needs the ``django_zerodeploy.trigger_deploy`` permission (being staff is not
enough); the views that do it live in ``admin.views``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timezone import localtime

from ..models import Deployment
from . import views
from .permissions import ReadOnlyAdmin


def status_badge(status: str, label: str | None = None) -> str:
    if label is None:
        label = Deployment.Status(status).label if status in Deployment.Status.values else status
    return format_html('<span class="zd-badge zd-{}" data-zd-status>{}</span>', status, label)


def muted(text: str) -> str:
    """A placeholder in grey: what a column shows while it has no value yet."""
    return format_html('<span class="zd-muted">{}</span>', text)


def sha_code(sha: str, shown: str) -> str:
    """A commit as the console shows it: the short form, the whole sha on hover."""
    return format_html('<code class="zd-sha" title="{}">{}</code>', sha, shown)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = (
        "number",
        "status_display",
        "commit_display",
        "ref_display",
        "release_display",
        "trigger",
        "who",
        "host",
        "started_display",
        "duration_display",
    )
    list_display_links = ("number", "commit_display")
    list_filter = ("status", "trigger", "host", ("created_at", admin.DateFieldListFilter))
    date_hierarchy = "created_at"
    search_fields = (
        "target_sha",
        "previous_sha",
        "ref",
        "username",
        "user__username",
        "subject",
        "release_dir",
        "venv_key",
    )
    ordering = ("-created_at", "-id")
    list_select_related = ("user",)
    list_per_page = 50
    change_form_template = "admin/django_zerodeploy/deployment/detail.html"
    change_list_template = "admin/django_zerodeploy/deployment/change_list.html"
    # Status, target and message are in the live panel above the fieldsets (detail.html).
    fieldsets = (
        (
            "Release",
            {
                "fields": (
                    "ref_display",
                    "previous_display",
                    "release_dir_display",
                    "venv_key_display",
                    "applied_migrations",
                    "mixed_window_display",
                )
            },
        ),
        ("Who and where", {"fields": ("trigger", "who", "host", "pid", "task_id")}),
        ("When", {"fields": ("created_at", "started_at", "finished_at", "duration_display")}),
        (
            "Options",
            {"fields": ("options", "unsafe_migrations_acknowledged"), "classes": ("collapse",)},
        ),
    )
    # every field shown is read-only: the history is evidence
    readonly_fields = tuple(name for _, section in fieldsets for name in section["fields"])

    class Media:
        css = {"all": ("django_zerodeploy/deployments.css",)}
        js = ("django_zerodeploy/deployment_live.js",)

    # -- columns ---------------------------------------------------------------------------
    def get_list_display(self, request: HttpRequest) -> Any:
        """The release column once a deploy ran in the releases layout: the history of a site
        that deploys in place keeps its width."""
        shown = super().get_list_display(request)
        if Deployment.objects.filter(release_dir__gt="").exists():
            return shown
        return tuple(column for column in shown if column != "release_display")

    @admin.display(description="#", ordering="id")
    def number(self, obj: Deployment) -> str:
        return f"#{obj.pk}"

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Deployment) -> str:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="target commit", ordering="target_sha")
    def commit_display(self, obj: Deployment) -> str:
        if not obj.target_sha:
            return muted("not resolved yet")
        subject = format_html(
            '<span title="{}">{}</span>', obj.subject, Truncator(obj.subject).chars(60)
        )
        return format_html("{} {}", sha_code(obj.target_sha, obj.short_sha), subject)

    @admin.display(description="started", ordering="started_at")
    def started_display(self, obj: Deployment) -> str:
        when = obj.started_at or obj.created_at
        if not when:
            return "—"
        local = localtime(when)
        return format_html(
            '<span class="zd-nowrap">{}</span><br><span class="zd-nowrap zd-muted">{}</span>',
            local.strftime("%Y-%m-%d"),
            local.strftime("%H:%M:%S"),
        )

    @admin.display(description="ref", ordering="ref")
    def ref_display(self, obj: Deployment) -> str:
        rollback = (obj.options or {}).get("rollback")
        if rollback:
            return f"rollback to {rollback}" if rollback is not True else "rollback"
        return obj.ref or "branch head"

    @admin.display(description="previous release")
    def previous_display(self, obj: Deployment) -> str:
        if not obj.previous_sha:
            return "—"
        return sha_code(obj.previous_sha, obj.previous_sha[:10])

    @admin.display(description="release", ordering="release_dir")
    def release_display(self, obj: Deployment) -> str:
        """The releases layout's release directory over its venv key; a dash in place."""
        if not obj.release_dir:
            return muted("—")
        return format_html(
            '<code class="zd-release">{}</code><br><code class="zd-muted" title="venv">{}</code>',
            obj.release_dir,
            obj.venv_key or "—",
        )

    @admin.display(description="release directory")
    def release_dir_display(self, obj: Deployment) -> str:
        if not obj.release_dir:
            return "— (in place: no release directory)"
        return format_html('<code class="zd-release">releases/{}</code>', obj.release_dir)

    @admin.display(description="venv key")
    def venv_key_display(self, obj: Deployment) -> str:
        if not obj.venv_key:
            return "—"
        return format_html('<code class="zd-release">venvs/{}</code>', obj.venv_key)

    @admin.display(description="user", ordering="username")
    def who(self, obj: Deployment) -> str:
        return obj.username or (obj.user.get_username() if obj.user else "—")

    @admin.display(description="duration")
    def duration_display(self, obj: Deployment) -> str:
        return format_seconds(obj.duration)

    @admin.display(description="mixed window")
    def mixed_window_display(self, obj: Deployment) -> str:
        return format_seconds(obj.mixed_window_seconds)

    # -- pages -----------------------------------------------------------------------------
    # (route, view, URL name's end): the console's own pages, next to the admin's
    PAGES = (
        ("deploy/", views.deploy_view, "deploy"),
        ("<int:object_id>/rollback/", views.rollback_view, "rollback"),
        ("<int:object_id>/cancel/", views.cancel_view, "cancel"),
        ("<int:object_id>/progress/", views.progress_view, "progress"),
    )

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        custom = [
            path(route, wrap(self._view(view)), name="{}_{}_{}".format(*info, name))
            for route, view, name in self.PAGES
        ]
        return custom + super().get_urls()

    def _view(self, func: Any) -> Any:
        def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return func(request, self, *args, **kwargs)

        view.__name__ = func.__name__
        return view

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {
            "title": "Deploy history",
            **views.console_context(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None:
            context.update(views.detail_context(self, request, obj))
        return super().change_view(request, object_id, form_url, context)

    def detail_url(self, obj: Deployment) -> str:
        return reverse(f"{self.admin_site.name}:django_zerodeploy_deployment_change", args=[obj.pk])
