"""Which releases a deploy may go to: the bad-release rule (a release that was rolled back is
refused until a later deploy of it succeeds) and the commit ``--rollback`` goes back to."""

from __future__ import annotations

from collections.abc import Iterable

from .. import exit_codes
from ..exit_codes import CommandFailure
from ..git import Git, GitError
from ..models import Deployment, DeploymentStep
from .records import CANCELLED, UNDO_PREFIX

Status = Deployment.Status
StepStatus = DeploymentStep.Status


def bad_release(sha: str, innocent: Iterable[str]) -> Deployment | None:
    """The deployment that rolled ``sha`` back, unless a later deploy of it succeeded (--force).
    A failure of a step in ``innocent`` (before the release was even built) does not count."""
    finished = (
        Deployment.objects.filter(target_sha=sha)
        .exclude(status__in=[Status.QUEUED, Status.RUNNING, Status.NOTHING, Status.INTERRUPTED])
        .order_by("-created_at", "-id")
    )
    for deployment in finished[:50]:
        if deployment.status == Status.SUCCEEDED:
            return None
        if deployment.message.startswith(CANCELLED):
            continue
        if deployment.status == Status.ROLLED_BACK:
            return deployment
        failed_release_step = (
            deployment.steps.filter(status=StepStatus.FAILED)
            .exclude(name__in=sorted(innocent))
            .exclude(name__startswith=UNDO_PREFIX)
            .exists()
        )
        if failed_release_step:
            return deployment
    return None


def rollback_target(
    spec: str | bool, serving: set[str], head: str | None, git: Git
) -> tuple[str, str]:
    """(commit, label) that ``--rollback [ID|COMMIT]`` names: a deployment id, a commit, or
    (True) the release that succeeded before the one serving now."""
    if spec is True or spec in ("", None):
        current = serving if serving else ({head} if head else set())
        seen_current = False
        for deployment in Deployment.objects.filter(status=Status.SUCCEEDED).order_by(
            "-created_at", "-id"
        )[:200]:
            if deployment.target_sha in current:
                seen_current = True
                continue
            if seen_current or not current:
                return deployment.target_sha, f"rollback to #{deployment.pk}"
        # no earlier successful deploy recorded: the release the current one replaced
        latest = Deployment.objects.filter(status=Status.SUCCEEDED, target_sha__in=current).first()
        if latest and latest.previous_sha:
            return latest.previous_sha, f"rollback to the release before #{latest.pk}"
        raise CommandFailure(
            "No earlier successful release is recorded: name one with "
            "--rollback ID or --rollback COMMIT.",
            exit_codes.USAGE,
        )
    text = str(spec)
    if text.isdigit() and len(text) < 12:
        deployment = Deployment.objects.filter(pk=int(text)).first()
        if deployment is not None:
            if deployment.status != Status.SUCCEEDED or not deployment.target_sha:
                raise CommandFailure(
                    f"Deployment #{deployment.pk} did not succeed ({deployment.status}): roll back to "
                    "a release that served.",
                    exit_codes.USAGE,
                )
            return deployment.target_sha, f"rollback to #{deployment.pk}"
    try:
        return git.resolve(text), f"rollback to {text}"
    except GitError as exc:
        raise CommandFailure(
            f"--rollback {text!r}: no such deployment id or commit ({exc}).", exit_codes.USAGE
        ) from None
