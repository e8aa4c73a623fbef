"""Deploy records. Written as the deploy goes, so a killed deploy leaves an honest row."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class Deployment(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        NOTHING = "nothing", "nothing to deploy"
        FAILED = "failed", "failed"
        ROLLED_BACK = "rolled_back", "rolled back"
        INTERRUPTED = "interrupted", "interrupted"

    class Trigger(models.TextChoices):
        CLI = "cli", "command line"
        ADMIN = "admin", "admin"
        WEBHOOK = "webhook", "webhook"
        ROLLOUT = "rollout", "rollout"

    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.CLI)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(
        max_length=150, blank=True, help_text="Who started it (OS user for the CLI)."
    )
    host = models.CharField(max_length=255, blank=True, db_index=True)
    pid = models.IntegerField(null=True, blank=True)
    ref = models.CharField(max_length=255, blank=True)
    previous_sha = models.CharField(max_length=40, blank=True)
    target_sha = models.CharField(max_length=40, blank=True, db_index=True)
    subject = models.CharField(max_length=500, blank=True)
    commits = models.JSONField(
        default=list, blank=True, help_text="[[sha, subject], ...] from previous to target."
    )
    options = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True, help_text="Outcome in one sentence.")
    applied_migrations = models.JSONField(default=list, blank=True)
    unsafe_migrations_acknowledged = models.BooleanField(default=False)
    mixed_window_seconds = models.FloatField(null=True, blank=True)
    # The releases layout's release and venv; blank in place. Nullable: rows written by a
    # release that does not know these columns yet (its INSERTs do not name them).
    release_dir = models.CharField(  # noqa: DJ001
        max_length=100,
        null=True,
        blank=True,
        default="",
        help_text="Its release directory: the name under ROOT/releases/ (releases layout).",
    )
    venv_key = models.CharField(  # noqa: DJ001
        max_length=100,
        null=True,
        blank=True,
        default="",
        help_text="Its virtualenv: the key under ROOT/venvs/ (releases layout).",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    rollout = models.ForeignKey(
        "Rollout", null=True, blank=True, on_delete=models.SET_NULL, related_name="deployments"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("trigger_deploy", "Can start deploys and rollbacks")]

    def __str__(self) -> str:
        return f"Deployment #{self.pk} {self.short_sha or '?'} ({self.status})"

    @property
    def short_sha(self) -> str:
        return self.target_sha[:10]

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def is_finished(self) -> bool:
        return self.status not in (self.Status.QUEUED, self.Status.RUNNING)


class DeploymentStep(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        OK = "ok", "ok"
        SKIPPED = "skipped", "skipped"
        FAILED = "failed", "failed"
        ROLLED_BACK = "rolled_back", "rolled back"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=64)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    detail = models.CharField(max_length=500, blank=True, help_text="Why it ran or was skipped.")
    started_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)
    returncode = models.IntegerField(null=True, blank=True)
    output = models.TextField(blank=True)

    class Meta:
        ordering = ["deployment", "position", "id"]

    def __str__(self) -> str:
        return f"{self.name}: {self.status}"


class WebhookDelivery(models.Model):
    """Deliveries already received. A replay is recognised by the hash of its body (what the
    signature covers), not by the delivery id, an unsigned header anyone can change."""

    provider = models.CharField(max_length=20)
    delivery_id = models.CharField(max_length=200, blank=True, help_text="As the forge sent it.")
    # nullable: rows written before it existed, and by a release that does not know it yet
    body_sha256 = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            # not per provider: Forgejo signs one body for its own, Gitea's and GitHub's
            # headers alike, so a body taken as forgejo could come back as gitea or github
            models.UniqueConstraint(fields=["body_sha256"], name="zerodeploy_unique_delivery_body")
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.delivery_id or self.body_sha256}"


# A host whose registry row is older than this has no running cluster.
HOST_STALE_AFTER = timedelta(seconds=30)


class Host(models.Model):
    """A host that runs this project, as its django-q2 cluster last reported it."""

    name = models.CharField(max_length=100, unique=True)
    cluster = models.CharField(max_length=100, blank=True, help_text="Queue its cluster reads.")
    release = models.CharField(
        max_length=40,
        blank=True,
        help_text="The releaseId its Gunicorn serves (HEALTHZ_URL), else its checkout's commit.",
    )
    # nullable: rows written by a release that predates them stay valid (expand-safe)
    release_from_checkout = models.BooleanField(
        default=False,
        null=True,
        help_text="HEALTHZ_URL gave no releaseId at the last heartbeat: release is the checkout's.",
    )
    release_problem = models.CharField(  # noqa: DJ001
        max_length=300,
        blank=True,
        default="",
        null=True,
        help_text="Why HEALTHZ_URL gave no releaseId.",
    )
    healthz_url = models.CharField(max_length=500, blank=True)
    drained = models.BooleanField(default=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True, help_text="Its cluster's start.")
    pid = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Rollout(models.Model):
    """One deploy across hosts, batch by batch; ``progress`` holds each host's state."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        ROLLED_BACK = "rolled_back", "rolled back"
        INTERRUPTED = "interrupted", "interrupted"
        REFUSED = "refused", "refused"

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    trigger = models.CharField(max_length=20, default="cli")
    username = models.CharField(max_length=150, blank=True)
    coordinator = models.CharField(max_length=255, blank=True, help_text="host:pid")
    ref = models.CharField(max_length=255, blank=True)
    previous_sha = models.CharField(max_length=40, blank=True)
    target_sha = models.CharField(max_length=40, blank=True)
    batch_size = models.PositiveIntegerField(default=1)
    keep_switched = models.BooleanField(default=False)
    batches = models.JSONField(default=list, help_text="[[host, ...], ...] in order.")
    progress = models.JSONField(default=dict, help_text="{host: state}")
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Rollout #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status != self.Status.RUNNING


class RolloutLock(models.Model):
    """At most one row: the running rollout. Its holder refreshes ``heartbeat_at``; a stale
    row belongs to a coordinator that died and may be taken over."""

    name = models.CharField(max_length=20, primary_key=True, default="rollout")
    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="+")
    holder = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"lock held by rollout #{self.rollout_id}"
