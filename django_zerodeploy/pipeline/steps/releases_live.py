"""The releases layout's live side: the switch of ``ROOT/current`` (undone the same way), the
check that the new master runs from the new release, and KEEP_RELEASES."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import psutil

from ...conf import app_settings
from ...gunicorn import readiness
from ...releases import prune, switch
from ...releases.layout import VENV_LINK, Release
from .. import serving
from ..context import DeployContext, Outcome, PlannedStep, StepFailed
from .base import Step
from .releases_build import built_release, live_release, planned_release, venv_plan


class SwitchStep(Step):
    """``ROOT/current`` renamed to the new release in one step; undone the same way."""

    name = "switch"
    changes_live = True
    undo_rank = 2
    previous: Release | None = None

    def __init__(self, record: bool = True) -> None:
        self.record = record  # False for a rollback: the release's metadata stays as it was

    def plan(self, ctx: DeployContext) -> PlannedStep:
        current, to = ctx.releases_root().current(), planned_release(ctx)
        old = current.name if current else "nothing"
        return PlannedStep(
            self.name, True, f"current: {old} -> {to.name}", {"from": old, "to": to.name}
        )

    def run(self, ctx: DeployContext) -> Outcome:
        root, release = ctx.releases_root(), built_release(ctx)
        if self.record:
            root.write_metadata(
                release.name,
                complete=True,
                applied_migrations=list(ctx.applied_migrations),
                deployment_id=getattr(ctx.deployment, "pk", None),
            )
        self.previous = root.previous()  # what a switch back restores as ROOT/previous
        live = live_release(ctx)  # ROOT/previous: what served, not a release that never did
        done = switch.switch(root, release, previous=live if live != release else None)
        ctx.switched = ctx.checked_out = True
        old = done.old.name if done.old else "nothing"
        return Outcome(f"current: {old} -> {release.name}")

    def undo(self, ctx: DeployContext) -> Outcome | None:
        if not ctx.switched or ctx.live_project is None:
            return None
        root = ctx.releases_root()
        back = root.release(ctx.live_project.repo_dir.name)
        switch.switch(root, back, previous=self.previous)
        ctx.switched = False
        return Outcome(f"current: back to {back.name}")


class ServedFromStep(Step):
    """The new master runs in the new release's directory (Gunicorn #394, #1898)."""

    name = "served_from"

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        if ctx.options.no_reload:
            return False, "--no-reload"
        return True, "the new master's working directory"

    def run(self, ctx: DeployContext) -> Outcome:
        release = built_release(ctx)
        master = serving.project_master()
        try:
            cwd = Path(psutil.Process(master.pid).cwd()).resolve()
        except psutil.Error as exc:
            raise StepFailed(f"Cannot read the new master's directory: {exc}") from None
        if cwd != release.path.resolve():
            raise StepFailed(
                f"The new Gunicorn master {master.pid} runs from {cwd}, not {release.path}: "
                "configure pre_exec from django_zerodeploy.gunicorn_conf (see docs/releases.md)."
            )
        venv, wanted = _master_venv(master.pid), (release.path / VENV_LINK).resolve()
        if venv is not None and venv != wanted:
            raise StepFailed(
                f"The new Gunicorn master {master.pid} runs the Python of {venv}, not of the "
                f"release's venv {wanted}: start Gunicorn with ROOT/current/.venv/bin/gunicorn "
                "and the pre_exec hook of django_zerodeploy.gunicorn_conf (see docs/releases.md)."
            )
        return Outcome(f"master {master.pid} in {cwd}" + (f", Python of {venv}" if venv else ""))


def _master_venv(pid: int) -> Path | None:
    """The venv whose interpreter a master runs (as its workers report it), None when unknown."""
    facts = readiness.read_master_facts(pid)
    if not facts or not facts.executable:
        return None
    return Path(os.path.realpath(Path(facts.executable).parent)).parent  # bin/python: a link


class PruneStep(Step):
    """KEEP_RELEASES; a failure here is a warning, never a rollback."""

    name = "prune"
    rollback_on_failure: ClassVar[bool] = False

    def plan(self, ctx: DeployContext) -> PlannedStep:
        keep = int(app_settings.KEEP_RELEASES)
        doomed = prune.select(  # previous becomes what serves, as SwitchStep makes it
            ctx.releases_root(),
            keep,
            adding=planned_release(ctx),
            adding_venv=venv_plan(ctx).key,
            serving=live_release(ctx),
        )
        parts = [f"{len(names)} {what}(s): {', '.join(names)}" for what, names in
                 (("release", doomed.releases), ("venv", doomed.venvs)) if names]  # fmt: skip
        why = "would remove " + "; ".join(parts) if parts else "nothing to remove"
        return PlannedStep(
            self.name,
            True,
            f"KEEP_RELEASES {keep}: {why}",
            {"keep": keep, "releases": doomed.releases, "venvs": doomed.venvs},
        )

    def run(self, ctx: DeployContext) -> Outcome:
        try:
            return Outcome(
                prune.prune(ctx.releases_root(), int(app_settings.KEEP_RELEASES)).describe()
            )
        except OSError as exc:
            return Outcome(f"warning: pruning failed: {exc}")
