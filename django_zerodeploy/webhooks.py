"""Signed push webhooks from GitHub, GitLab and Gitea/Forgejo start a background deploy.

Off unless ``WEBHOOK_SECRET`` is set (then the path answers 404 like any unknown URL). A
delivery is accepted only from a forge named in ``WEBHOOK_PROVIDERS``, with a valid signature
(compared in constant time), a body never received before (replays are refused by the hash of
what is signed; the delivery id is an unsigned header) and a push to the branch this checkout
deploys of a commit that is neither queued already nor serving or older. The view only records
and enqueues, so it answers 202 in milliseconds; the deploy runs in django-q2.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, JsonResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from .conf import app_settings
from .git import Git, GitError, is_sha
from .models import Deployment, WebhookDelivery
from .tasks.queue import queue_deployment

logger = logging.getLogger("django_zerodeploy.webhooks")

NULL_SHA = "0" * 40


class WebhookError(Exception):
    """A delivery that is refused: ``status`` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Provider:
    """How one forge names its headers and signs its deliveries."""

    name: str
    event_header: str
    delivery_headers: tuple[str, ...]
    signature_header: str
    scheme: str  # "hmac-sha256-prefixed" (sha256=<hex>), "hmac-sha256-hex" or "token"
    push_events: tuple[str, ...]
    ping_events: tuple[str, ...] = ()


# Detection order matters: Forgejo also sends X-Gitea-* headers, and Gitea/Forgejo also send
# GitHub-compatible ones, so the most specific forge is tried first.
PROVIDERS: tuple[Provider, ...] = (
    Provider(
        "forgejo",
        "X-Forgejo-Event",
        ("X-Forgejo-Delivery",),
        "X-Forgejo-Signature",
        "hmac-sha256-hex",
        ("push",),
    ),
    Provider(
        "gitea",
        "X-Gitea-Event",
        ("X-Gitea-Delivery",),
        "X-Gitea-Signature",
        "hmac-sha256-hex",
        ("push",),
    ),
    Provider(
        "gitlab",
        "X-Gitlab-Event",
        # not X-Gitlab-Webhook-UUID: it names the hook, the same on every delivery
        ("X-Gitlab-Event-UUID", "Idempotency-Key"),
        "X-Gitlab-Token",
        "token",
        ("Push Hook",),
    ),
    Provider(
        "github",
        "X-GitHub-Event",
        ("X-GitHub-Delivery",),
        "X-Hub-Signature-256",
        "hmac-sha256-prefixed",
        ("push",),
        ("ping",),
    ),
)


@dataclass(frozen=True)
class Push:
    """The parts of a push delivery a deploy needs."""

    ref: str
    after: str
    subject: str
    pusher: str

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None

    @property
    def deleted(self) -> bool:
        return self.after in ("", NULL_SHA)


# -- the pieces ----------------------------------------------------------------------------
def detect_provider(headers: Any, enabled: Any) -> Provider:
    """The provider among ``enabled`` (WEBHOOK_PROVIDERS) whose headers the delivery carries.
    One secret serves every scheme, so a forge not chosen must not be tried: a GitHub-only
    site would otherwise take its raw secret as a GitLab token."""
    if not enabled:
        raise WebhookError(
            403,
            "This site accepts no webhook provider yet: ZERODEPLOY['WEBHOOK_PROVIDERS'] is empty.",
        )
    sent = [p for p in PROVIDERS if p.signature_header in headers or p.event_header in headers]
    for provider in sent:
        if provider.name in enabled:
            return provider
    if sent:
        raise WebhookError(
            403,
            f"Deliveries from {sent[0].name} are not accepted here "
            f"(ZERODEPLOY['WEBHOOK_PROVIDERS'] is {list(enabled)!r}).",
        )
    raise WebhookError(
        403,
        "No webhook signature: expected X-Hub-Signature-256, X-Gitlab-Token, "
        "X-Gitea-Signature or X-Forgejo-Signature.",
    )


def verify_signature(provider: Provider, headers: Any, body: bytes, secret: str) -> None:
    """Raise 403 unless the delivery is signed with ``secret``. Constant-time comparisons."""
    given = headers.get(provider.signature_header, "")
    if not given:
        raise WebhookError(403, f"Missing {provider.signature_header} header.")
    given_bytes = given.strip().encode("latin-1", "replace")
    key = secret.encode()
    if provider.scheme == "token":
        ok = hmac.compare_digest(given_bytes, key)
    else:
        digest = hmac.new(key, body, hashlib.sha256).hexdigest()
        expected = f"sha256={digest}" if provider.scheme == "hmac-sha256-prefixed" else digest
        ok = hmac.compare_digest(given_bytes.lower(), expected.encode())
    if not ok:
        raise WebhookError(
            403,
            f"Bad {provider.signature_header}: the delivery is not signed "
            "with this site's WEBHOOK_SECRET.",
        )


def delivery_id(provider: Provider, headers: Any) -> str:
    """The forge's id of this delivery, for the record only ('' when it sends none)."""
    for name in provider.delivery_headers:
        value = headers.get(name, "").strip()
        if value:
            if len(value) > 200:
                raise WebhookError(400, f"{name} is longer than 200 characters.")
            return value
    return ""


def parse_payload(body: bytes, content_type: str) -> dict[str, Any]:
    """The JSON payload (GitHub may also send it form-encoded as ``payload=``)."""
    try:
        text = body.decode("utf-8")
        if content_type.startswith("application/x-www-form-urlencoded"):
            text = parse_qs(text, strict_parsing=True).get("payload", [""])[0]
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookError(400, f"The body is not a JSON payload: {exc}") from exc
    if not isinstance(payload, dict):
        raise WebhookError(400, "The JSON payload is not an object.")
    return payload


def parse_push(provider: Provider, payload: dict[str, Any]) -> Push:
    ref = payload.get("ref")
    after = payload.get("after") or payload.get("checkout_sha") or ""
    if not isinstance(ref, str) or not ref or not isinstance(after, str):
        raise WebhookError(400, "A push payload needs 'ref' and 'after'.")
    subject, pusher = "", ""
    if provider.name == "gitlab":
        commits = [c for c in payload.get("commits") or [] if isinstance(c, dict)]
        head = next((c for c in commits if c.get("id") == after), commits[-1] if commits else {})
        subject = str(head.get("title") or head.get("message") or "")
        pusher = str(payload.get("user_username") or payload.get("user_name") or "")
    else:
        head = payload.get("head_commit") if isinstance(payload.get("head_commit"), dict) else {}
        subject = str(head.get("message") or "")
        who = payload.get("pusher") if isinstance(payload.get("pusher"), dict) else {}
        pusher = str(who.get("name") or who.get("login") or who.get("username") or "")
    if payload.get("deleted") is True:
        after = NULL_SHA
    after = after.lower()
    if not is_sha(after):  # it becomes the record's target_sha: a commit id, nothing else
        raise WebhookError(400, "'after' is not a 40-hex commit id.")
    return Push(ref=ref, after=after, subject=subject.split("\n", 1)[0][:500], pusher=pusher)


def deploy_branch() -> str | None:
    """The branch this checkout deploys: ``BRANCH``, else the checked-out branch's upstream
    (one git call: the webhook must answer fast)."""
    if app_settings.BRANCH:
        return app_settings.BRANCH
    try:
        out = Git(app_settings.repo_dir, timeout=10).out(
            "for-each-ref", "--format=%(HEAD)%00%(upstream:remoteref)", "refs/heads/"
        )
    except GitError:
        return None
    for line in out.splitlines():
        current, _, upstream = line.partition("\x00")
        if current == "*" and upstream.startswith("refs/heads/"):
            return upstream.removeprefix("refs/heads/")
    return None


def read_body(request: HttpRequest, limit: int) -> bytes:
    """At most ``limit`` bytes of the body; 413 beyond (checked before reading when declared)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(declared)
    except ValueError as exc:
        raise WebhookError(400, "Bad Content-Length.") from exc
    if length > limit:
        raise WebhookError(
            413, f"Body of {length} bytes is larger than WEBHOOK_MAX_BYTES ({limit})."
        )
    body = request.read(limit + 1)
    if len(body) > limit:
        raise WebhookError(413, f"Body is larger than WEBHOOK_MAX_BYTES ({limit}).")
    return body


# -- the view ------------------------------------------------------------------------------
@csrf_exempt
def webhook(request: HttpRequest) -> JsonResponse | HttpResponseNotAllowed:
    """POST endpoint for push webhooks; see the module docstring for what it accepts."""
    secret = app_settings.WEBHOOK_SECRET
    if not secret:
        raise Http404("The deploy webhook is off (WEBHOOK_SECRET is not set).")
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        return _handle(request, secret)
    except WebhookError as exc:
        logger.warning("Webhook refused (%s): %s", exc.status, exc.message)
        return JsonResponse({"status": "refused", "error": exc.message}, status=exc.status)


def _handle(request: HttpRequest, secret: str) -> JsonResponse:
    body = read_body(request, app_settings.WEBHOOK_MAX_BYTES)
    provider = detect_provider(request.headers, app_settings.WEBHOOK_PROVIDERS)
    verify_signature(provider, request.headers, body, secret)
    delivery = delivery_id(provider, request.headers)
    event = request.headers.get(provider.event_header, "")
    if not event:
        raise WebhookError(400, f"Missing {provider.event_header} header.")
    payload = parse_payload(body, request.content_type or "")
    if event in provider.ping_events:
        return JsonResponse({"status": "pong", "provider": provider.name})
    if event not in provider.push_events:
        return JsonResponse({"status": "ignored", "reason": f"event {event!r} is not a push"})
    push = parse_push(provider, payload)
    wanted = deploy_branch()
    if not wanted:
        raise WebhookError(
            400,
            "This site does not know which branch it deploys: set "
            "ZERODEPLOY['BRANCH'] or give the checkout an upstream.",
        )
    _prune_deliveries()
    try:
        with transaction.atomic():
            seen = WebhookDelivery.objects.create(
                provider=provider.name,
                delivery_id=delivery,
                body_sha256=hashlib.sha256(body).hexdigest(),
            )
            reason = _ignore_reason(push, wanted)
            if reason:
                return JsonResponse({"status": "ignored", "reason": reason})
            record = queue_deployment(
                trigger=Deployment.Trigger.WEBHOOK,
                username=_username(provider, push),
                ref=wanted,
                target_sha=push.after,
                subject=push.subject,
            )
            seen.deployment = record
            seen.save(update_fields=["deployment"])
    except IntegrityError:
        raise WebhookError(
            409,
            f"This delivery from {provider.name} (id {delivery or 'none'!r}) was already "
            "received: replays are refused.",
        ) from None
    return JsonResponse(
        {"status": "queued", "deployment": record.pk, "url": _admin_url(record)}, status=202
    )


def _prune_deliveries() -> None:
    """Forget deliveries older than WEBHOOK_KEEP_DAYS (a replay of one of those is still
    ignored: its commit is then serving or older)."""
    cutoff = timezone.now() - timedelta(days=app_settings.WEBHOOK_KEEP_DAYS)
    WebhookDelivery.objects.filter(received_at__lt=cutoff).delete()


def _username(provider: Provider, push: Push) -> str:
    """``provider:pusher``, cut to the column's length: the name comes from the payload."""
    name = f"{provider.name}:{push.pusher}" if push.pusher else provider.name
    return name[: Deployment._meta.get_field("username").max_length]


def _ignore_reason(push: Push, wanted: str) -> str | None:
    if push.branch != wanted:
        return f"push to {push.ref}; this site deploys refs/heads/{wanted}"
    if push.deleted:
        return f"{push.ref} was deleted"
    active = (Deployment.Status.QUEUED, Deployment.Status.RUNNING)
    if Deployment.objects.filter(target_sha=push.after, status__in=active).exists():
        return f"a deploy of {push.after[:10]} is already queued or running"
    done = Deployment.objects.filter(target_sha=push.after, status=Deployment.Status.SUCCEEDED)
    first = done.order_by("pk").first()
    if first is not None:  # e.g. rolled back since: a replay must not bring it back
        return (
            f"{push.after[:10]} was already deployed (deploy #{first.pk}); deploy it from the admin"
        )
    return _serving_reason(push.after)


def _serving_reason(sha: str) -> str | None:
    """Why ``sha`` needs no deploy: this checkout is at it or past it. A commit the checkout
    does not have yet (not fetched) is new. One local git call, no fetch."""
    git = Git(app_settings.repo_dir, timeout=10)
    try:
        head = git.head()
        if head == sha:
            return f"this site already serves {sha[:10]}"
        older = git.is_ancestor(sha, head)
    except GitError:
        return None
    if older:
        return f"{sha[:10]} is older than {head[:10]}, which this site serves"
    return None


def _admin_url(record: Deployment) -> str | None:
    try:
        return reverse("admin:django_zerodeploy_deployment_change", args=[record.pk])
    except NoReverseMatch:
        return None
