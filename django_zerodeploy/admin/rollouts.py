"""The hosts page and the rollouts in the Django admin: read-only evidence, like deploys.

Hosts are written by their clusters' heartbeats, rollouts by the coordinator; nobody adds or
edits them here. A superuser may delete a host that is gone for good, so that ``--hosts all``
stops waiting for it.
"""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.timezone import now

from ..models import Host, Rollout
from ..rollout.hosts import STALE_AFTER
from .permissions import ReadOnlyAdmin


@admin.register(Host)
class HostAdmin(ReadOnlyAdmin):
    list_display = ("name", "release_display", "heartbeat_display", "state", "cluster")
    readonly_fields = (
        "name",
        "cluster",
        "release",
        "release_from_checkout",
        "release_problem",
        "healthz_url",
        "drained",
        "heartbeat_at",
    )
    fields = readonly_fields
    ordering = ("name",)

    @admin.display(description="release")
    def release_display(self, obj: Host) -> str:
        if obj.release_from_checkout:  # HEALTHZ_URL gave no releaseId: say where it came from
            return format_html(
                '<code>{}</code> <span title="{}">(checkout)</span>',
                obj.release[:10] or "?",
                obj.release_problem or "",
            )
        return format_html("<code>{}</code>", obj.release[:10] or "?")

    @admin.display(description="heartbeat", ordering="heartbeat_at")
    def heartbeat_display(self, obj: Host) -> str:
        if not obj.heartbeat_at:
            return "never"
        return f"{(now() - obj.heartbeat_at).total_seconds():.0f} s ago"

    @admin.display(description="state")
    def state(self, obj: Host) -> str:
        if obj.drained:
            return "drained"
        fresh = obj.heartbeat_at and now() - obj.heartbeat_at < STALE_AFTER
        return "up" if fresh else "no cluster"


@admin.register(Rollout)
class RolloutAdmin(ReadOnlyAdmin):
    list_display = ("number", "status", "target", "hosts_display", "created_at", "message")
    list_filter = ("status",)
    readonly_fields = (
        "status",
        "coordinator",
        "previous_sha",
        "target_sha",
        "batch_size",
        "keep_switched",
        "progress_display",
        "message",
        "created_at",
        "finished_at",
    )
    fields = readonly_fields

    @admin.display(description="#", ordering="id")
    def number(self, obj: Rollout) -> str:
        return f"#{obj.pk}"

    @admin.display(description="target")
    def target(self, obj: Rollout) -> str:
        return format_html("<code>{}</code>", obj.target_sha[:10] or "?")

    @admin.display(description="hosts")
    def hosts_display(self, obj: Rollout) -> str:
        return ", ".join(f"{h}: {s}" for h, s in obj.progress.items())

    @admin.display(description="hosts, batch by batch")
    def progress_display(self, obj: Rollout) -> str:
        rows = [
            (number, host, obj.progress.get(host, "?"))
            for number, batch in enumerate(obj.batches or [list(obj.progress)], 1)
            for host in batch
        ]
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><td>batch {}</td><td>{}</td><td>{}</td></tr>", rows),
        )
