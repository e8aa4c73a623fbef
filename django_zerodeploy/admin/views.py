"""The admin's own pages: confirm a deploy or rollback (with the dry-run plan), cancel a queued
deploy, and the staff-only JSON the detail page polls while a deploy runs.

A GET runs no code of any release: a link is enough to make a logged-in deployer open it
(SameSite=Lax sends the session cookie on a top-level GET), and anyone who can push a branch
could write that link. The confirmation page shows git facts only; the migration plan, which
runs the target's ``manage.py``, is computed after a CSRF-protected POST, or by the deploy.

Every view here is wrapped by ``AdminSite.admin_view`` (staff login, CSRF on POST). Changing
anything also needs ``django_zerodeploy.trigger_deploy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ..exit_codes import CommandFailure
from ..git import GitError, validate_ref
from ..models import Deployment, DeploymentStep
from ..pipeline.deploy_history import iso
from ..proc import tail
from ..tasks.cluster_status import cluster_status
from ..tasks.queue import queue_deployment
from ..timeline import step_bars
from .permissions import can_trigger

if TYPE_CHECKING:
    from .deployments import DeploymentAdmin

ACTIVE = (Deployment.Status.QUEUED, Deployment.Status.RUNNING)
POLL_OUTPUT_BYTES = 8192  # the JSON carries each step's output tail; the page shows it all
# Bound on each command of a preview (a fetch from a slow remote, the target's migration plan
# after a POST): the page must answer within Gunicorn's worker timeout (30 s by default), or
# the worker is killed (and a plan's worktree is left behind).
PREVIEW_GIT_TIMEOUT = 10.0


def _url(model_admin: DeploymentAdmin, name: str, *args: Any) -> str:
    return reverse(f"{model_admin.admin_site.name}:django_zerodeploy_deployment_{name}", args=args)


def _require_trigger(request: HttpRequest) -> None:
    if not can_trigger(request):
        raise PermissionDenied(
            "Starting deploys needs the django_zerodeploy.trigger_deploy permission."
        )


# -- context shared by the pages --------------------------------------------------------------
def console_context(request: HttpRequest) -> dict[str, Any]:
    """Cluster status and the deploy button, for the history page."""
    return {
        "zd_cluster": cluster_status(),
        "zd_can_trigger": can_trigger(request),
        "zd_active": list(Deployment.objects.filter(status__in=ACTIVE).order_by("id")[:5]),
    }


def detail_context(
    model_admin: DeploymentAdmin, request: HttpRequest, obj: Deployment
) -> dict[str, Any]:
    previous = Deployment.objects.filter(pk__lt=obj.pk).order_by("-pk").first()
    following = Deployment.objects.filter(pk__gt=obj.pk).order_by("pk").first()
    can = can_trigger(request)
    steps = list(obj.steps.all())
    return {
        "title": f"Deploy #{obj.pk}",
        "subtitle": None,  # the live panel says what str(obj) would, and stays current
        "zd_obj": obj,
        "zd_steps": steps,
        "zd_timeline": step_bars(steps),
        "zd_commits": [
            (c[0], c[0][:10], c[1] if len(c) > 1 else "") for c in obj.commits or [] if c
        ],
        "zd_previous": previous,
        "zd_next": following,
        "zd_previous_url": model_admin.detail_url(previous) if previous else None,
        "zd_next_url": model_admin.detail_url(following) if following else None,
        "zd_progress_url": _url(model_admin, "progress", obj.pk),
        "zd_finished": obj.is_finished,
        "zd_can_trigger": can,
        "zd_rollback_url": _url(model_admin, "rollback", obj.pk)
        if can and obj.status == Deployment.Status.SUCCEEDED and obj.target_sha
        else None,
        "zd_cancel_url": _url(model_admin, "cancel", obj.pk)
        if can and obj.status == Deployment.Status.QUEUED
        else None,
        "zd_cluster": cluster_status() if obj.status == Deployment.Status.QUEUED else None,
    }


# -- the dry-run plan -----------------------------------------------------------------------
@dataclass
class PlanPreview:
    text: str = ""
    data: dict[str, Any] | None = None
    error: str = ""


def preview_plan(*, run_code: bool = False, **options: Any) -> PlanPreview:
    """The pipeline's dry-run plan, or a readable error (a bad ref, an unreachable remote).
    ``run_code``: also the migration plan (only after a confirmed POST)."""
    try:
        from ..pipeline import DeployOptions, build_plan
    except ImportError as exc:
        return PlanPreview(error=f"The deploy pipeline is not available: {exc}")
    try:
        plan = build_plan(
            DeployOptions(dry_run=True, trigger="admin", **options),
            run_code=run_code,
            timeout=PREVIEW_GIT_TIMEOUT,
        )
    except CommandFailure as exc:
        return PlanPreview(error=exc.message)
    except GitError as exc:
        return PlanPreview(error=str(exc))
    except Exception as exc:  # noqa: BLE001 - the page must explain, not crash
        return PlanPreview(error=f"Could not compute the plan: {type(exc).__name__}: {exc}")
    data = plan.as_dict() if hasattr(plan, "as_dict") else None
    return PlanPreview(text=plan.as_text(), data=data)


def _confirm_page(
    model_admin: DeploymentAdmin, request: HttpRequest, **context: Any
) -> TemplateResponse:
    opts = model_admin.opts
    base = {
        **model_admin.admin_site.each_context(request),
        "opts": opts,
        "app_label": opts.app_label,
        "zd_cluster": cluster_status(),
        "zd_active": list(Deployment.objects.filter(status__in=ACTIVE).order_by("id")[:5]),
        "zd_changelist_url": _url(model_admin, "changelist"),
        "media": model_admin.media,
    }
    status = context.pop("status", 200)
    return TemplateResponse(
        request,
        "admin/django_zerodeploy/deployment/confirm.html",
        {**base, **context},
        status=status,
    )


# -- views ------------------------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
def deploy_view(request: HttpRequest, model_admin: DeploymentAdmin) -> HttpResponse:
    """GET: the plan for the branch head (or ``?ref=``) and a Deploy button. POST: queue it."""
    _require_trigger(request)
    source = request.POST if request.method == "POST" else request.GET
    ref = source.get("ref", "").strip()
    ref_error = ""
    if ref:
        try:
            validate_ref(ref)
        except GitError as exc:
            ref_error = str(exc)
    preview = request.method == "POST" and source.get("preview") == "1"
    if request.method == "POST" and not ref_error and not preview:
        force = source.get("force") == "1"
        record = queue_deployment(
            trigger=Deployment.Trigger.ADMIN,
            user=request.user,
            ref=ref,
            options={"ref": ref or None, "force": force},
        )
        messages.success(request, f"Deploy #{record.pk} is queued; this page follows its progress.")
        return HttpResponseRedirect(model_admin.detail_url(record))
    plan = (
        PlanPreview(error=ref_error)
        if ref_error
        else preview_plan(ref=ref or None, run_code=preview)
    )
    return _confirm_page(
        model_admin,
        request,
        title="Deploy now",
        zd_kind="deploy",
        zd_ref=ref,
        zd_plan=plan,
        zd_full_plan=preview,
        zd_action=_url(model_admin, "deploy"),
        status=400 if request.method == "POST" and not preview else 200,
    )


@require_http_methods(["GET", "POST"])
def rollback_view(
    request: HttpRequest, model_admin: DeploymentAdmin, object_id: int
) -> HttpResponse:
    """Deploy the release of an earlier succeeded deploy again, through the same pipeline."""
    _require_trigger(request)
    target = Deployment.objects.filter(pk=object_id).first()
    if target is None:
        raise Http404("No such deploy.")
    if target.status != Deployment.Status.SUCCEEDED or not target.target_sha:
        messages.error(
            request,
            f"Deploy #{target.pk} did not succeed: only a succeeded release can be rolled back to.",
        )
        return HttpResponseRedirect(model_admin.detail_url(target))
    rollback = str(target.pk)
    preview = request.method == "POST" and request.POST.get("preview") == "1"
    if request.method == "POST" and not preview:
        record = queue_deployment(
            trigger=Deployment.Trigger.ADMIN,
            user=request.user,
            ref=target.target_sha,
            target_sha=target.target_sha,
            subject=target.subject,
            options={"rollback": rollback, "force": request.POST.get("force") == "1"},
        )
        messages.success(
            request,
            f"Rollback to the release of deploy #{target.pk} is queued as deploy #{record.pk}.",
        )
        return HttpResponseRedirect(model_admin.detail_url(record))
    return _confirm_page(
        model_admin,
        request,
        title=f"Roll back to the release of deploy #{target.pk}",
        zd_kind="rollback",
        zd_target=target,
        zd_plan=preview_plan(rollback=rollback, run_code=preview),
        zd_full_plan=preview,
        zd_action=_url(model_admin, "rollback", target.pk),
    )


@require_POST
def cancel_view(request: HttpRequest, model_admin: DeploymentAdmin, object_id: int) -> HttpResponse:
    """A queued deploy that has not started can be cancelled; its task then does nothing."""
    _require_trigger(request)
    who = request.user.get_username()
    cancelled = Deployment.objects.filter(pk=object_id, status=Deployment.Status.QUEUED).update(
        status=Deployment.Status.FAILED,
        finished_at=timezone.now(),
        message=f"Cancelled by {who} before it started.",
    )
    record = Deployment.objects.filter(pk=object_id).first()
    if record is None:
        raise Http404("No such deploy.")
    if cancelled:
        messages.success(request, f"Deploy #{record.pk} was cancelled.")
    else:
        messages.error(
            request,
            f"Deploy #{record.pk} is {record.get_status_display()}: only a queued deploy can be cancelled.",
        )
    return HttpResponseRedirect(model_admin.detail_url(record))


@require_GET
def progress_view(
    request: HttpRequest, model_admin: DeploymentAdmin, object_id: int
) -> JsonResponse:
    """Staff-only JSON of one deploy and its steps, polled by the detail page."""
    record = Deployment.objects.filter(pk=object_id).first()
    if record is None:
        raise Http404("No such deploy.")
    if not model_admin.has_view_permission(request, record):
        raise PermissionDenied
    return JsonResponse(progress_data(record))


def progress_data(record: Deployment) -> dict[str, Any]:
    steps = [_step_data(s) for s in record.steps.all()]
    return {
        "id": record.pk,
        "status": record.status,
        "status_label": record.get_status_display(),
        "finished": record.is_finished,
        "message": record.message,
        "target_sha": record.target_sha,
        "subject": record.subject,
        "previous_sha": record.previous_sha,
        "created_at": iso(record.created_at),
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
        "duration": record.duration,
        "elapsed": (timezone.now() - record.started_at).total_seconds()
        if record.started_at and not record.finished_at
        else record.duration,
        "steps": steps,
    }


def _step_data(step: DeploymentStep) -> dict[str, Any]:
    return {
        "position": step.position,
        "name": step.name,
        "status": step.status,
        "status_label": step.get_status_display(),
        "detail": step.detail,
        "duration": step.duration,
        "returncode": step.returncode,
        "output": tail(step.output or "", POLL_OUTPUT_BYTES),
    }
