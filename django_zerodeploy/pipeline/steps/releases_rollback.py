"""``deploy --rollback`` in the releases layout: switch ``current`` back to a kept release and
reload. No fetch, no pip, no collectstatic, no migration: the release and its venv are on disk
as they served. Refused, naming them, when the release being left (or one between it and the
target) applied migrations the target does not have: the target's code would run against a
schema it does not know.
"""

from __future__ import annotations

from pathlib import Path

from django.apps import apps

from ... import exit_codes
from ...exit_codes import CommandFailure
from ...git import GitError, is_sha, read_head_without_git
from ...releases.layout import Release, ReleasesRoot
from ..context import DeployContext, NothingToDeploy, Outcome, PlannedStep, StepFailed
from .base import Step


def rollback_release(root: ReleasesRoot, wanted: str | bool | None) -> Release:
    """The previous release (``--rollback``), or the newest complete release whose name,
    commit prefix or deployment id is ``wanted``."""
    complete = [r for r in root.releases() if root.is_complete(r.name)]
    if wanted is True or not wanted:
        previous = root.previous()
        if previous is None or previous not in complete:
            raise CommandFailure(
                "No previous release to roll back to (ROOT/previous is missing or was not "
                "built to the end): name one with --rollback RELEASE|COMMIT.",
                exit_codes.USAGE,
            )
        return previous
    text = str(wanted).lower()
    for release in reversed(complete):
        meta = root.metadata(release.name)
        sha = str(meta.get("sha") or "")
        if (
            text == release.name
            or (len(text) >= 7 and sha.startswith(text))
            or (text.isdigit() and str(meta.get("deployment_id")) == text)
        ):
            return release
    raise CommandFailure(
        f"--rollback {wanted}: no kept release has that name, commit or deployment id "
        f"(kept: {', '.join(r.name for r in complete) or 'none'}).",
        exit_codes.USAGE,
    )


def migrations_target_lacks(
    root: ReleasesRoot, leaving: Release, target: Release, live: Path
) -> list[str]:
    """Migrations applied by the deploys of releases after ``target`` up to ``leaving`` whose
    files the target does not have."""
    applied: list[str] = []
    for release in root.releases():
        if target.name < release.name <= leaving.name:
            applied += [str(m) for m in root.metadata(release.name).get("applied_migrations", [])]
    lacking = []
    for label in dict.fromkeys(applied):
        app_label, _, name = label.partition(".")
        try:
            folder = Path(apps.get_app_config(app_label).path).resolve() / "migrations"
            rel = folder.relative_to(live.resolve())
        except (LookupError, ValueError):
            continue  # an app outside the release: its migrations ship with the venv
        if not (target.path / rel / f"{name}.py").is_file():
            lacking.append(label)
    return lacking


class RollbackTargetStep(Step):
    """Which kept release to go back to, and whether its code knows the schema."""

    name = "target"
    decides_target = True

    def plan(self, ctx: DeployContext) -> PlannedStep:
        """After ``run`` (which only reads) chose ``ctx.release``: where to, its venv, and the
        migrations that refuse it."""
        root, target = ctx.releases_root(), ctx.release
        current = root.current()
        if target is None:
            return PlannedStep(self.name, False, "no release to roll back to")
        lacking = migrations_target_lacks(root, current, target, ctx.live) if current else []
        refused = f"; refused: it lacks the migrations {', '.join(lacking)}" if lacking else ""
        return PlannedStep(
            self.name,
            True,
            f"{current.name if current else '?'} -> {target.name} (venv {target.venv_key}){refused}",
            {
                "from": current.name if current else None,
                "release": target.name,
                "venv": target.venv_key,
                "refused_migrations": lacking,
            },
        )

    def run(self, ctx: DeployContext) -> Outcome:
        root = ctx.releases_root()
        current = root.current()
        target = rollback_release(root, ctx.options.rollback)
        sha = str(root.metadata(target.name).get("sha") or read_head_without_git(target.path))
        if not is_sha(sha):
            raise StepFailed(f"Cannot tell which commit release {target.name} holds.")
        ctx.release, ctx.live_project = target, ctx.project
        ctx.venv_key = target.venv_key or ""  # its kept venv: the one it served with
        ctx.target_sha, ctx.ref = sha, f"rollback to {target.name}"
        ctx.previous_sha = ctx.head_sha
        ctx.target_subject = _subject(ctx, sha)
        if current == target:
            raise NothingToDeploy(f"Nothing to roll back: {target.name} is current.")
        if current is not None:
            lacking = migrations_target_lacks(root, current, target, ctx.live)
            if lacking:
                raise StepFailed(
                    f"Rollback to {target.name} refused: it does not have the migrations "
                    f"{', '.join(lacking)}, applied since. Reverse them first (manage.py migrate "
                    "APP MIGRATION, from the current release), or deploy a fix forward."
                )
        return Outcome(
            f"{current.name if current else '?'} -> {target.name} (venv {target.venv_key})"
        )


def _subject(ctx: DeployContext, sha: str) -> str:
    try:
        return ctx.git.commit(sha).subject
    except GitError:
        return ""
