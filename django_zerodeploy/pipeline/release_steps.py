"""The deploy in the releases layout, as steps (``release_steps()``).

The new release is built beside the live one (a checkout, the shared paths linked, its venv
reused or built, bytecode compiled, static files collected into the one STATIC_ROOT without
``--clear``) while the old workers keep serving their own directory and venv, untouched. Then
pre-deploy migrations, one atomic switch of ``ROOT/current``, and a USR2 whose new master runs
from the new release (``gunicorn_conf.pre_exec``). A failed build never touches ``current``; a
failure after the switch switches back and reloads the previous release. There is no mixed
window: no old worker ever sees a file or a package of the new release.

A release with no changed migration and an unchanged venv runs no separate preflight: the new
generation boots behind the readiness gate (each worker imports the app, loads the URLconf and
requests SMOKE_URLS before it takes traffic), which is the import check. The preflight still runs
when migrations or ``check`` must run against the new code first, or when Gunicorn runs without
our hook.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar

import psutil

from .. import proc
from ..conf import app_settings
from ..git import GitError
from ..gunicorn import readiness
from ..releases import prune, shared, switch, venvs
from ..releases.layout import NAME_RE, VENV_LINK, Release, ReleasesRoot
from . import serving
from .context import DeployContext, Outcome, PlannedStep, StepFailed
from .project import current_layout
from .release_rollback import RollbackTargetStep
from .steps import (
    CollectStaticStep,
    EnvironmentStep,
    FetchStep,
    LockStep,
    MigrateStep,
    PostDeployMigrateStep,
    PreflightStep,
    ReloadStep,
    SmokeStep,
    Step,
    VerifyStep,
    _fail_from,
    _timeout,
    default_steps,
    requirement_files,
    with_extra_steps,
)

if TYPE_CHECKING:
    from .options import DeployOptions
    from .project import Project


def live_release(ctx: DeployContext) -> Release | None:
    """The release the old workers serve: the serving master's directory when it is a complete
    release of ROOT, else the one this deploy started from. They differ after a deploy killed
    between its switch and its reload: ``current`` names a release that never served."""
    root = ctx.releases_root()
    releases_dir = root.releases_dir.resolve()
    started_from = (ctx.live_project or ctx.project).repo_dir
    for where in (getattr(ctx.master, "cwd", None), started_from):
        if where is None:
            continue
        path = Path(where).resolve()
        if path.parent == releases_dir and NAME_RE.match(path.name):
            if root.is_complete(path.name):
                return root.release(path.name)
    return None


def _live_project(ctx: DeployContext) -> Project:
    """The project as the old workers run it: their release and that release's own venv."""
    live = live_release(ctx)
    if live is None:
        return ctx.project
    python = str(live.path / VENV_LINK / "bin" / "python")
    return dataclasses.replace(ctx.project, repo_dir=live.path, python=python)


def _release(ctx: DeployContext) -> Any:
    if ctx.release is None:
        raise StepFailed("no release was built")
    return ctx.release


def planned_release(ctx: DeployContext) -> Release:
    """The release a plan talks about: the rollback's target, or the one a deploy would build
    (named as it would be now; the deploy names it when it builds it)."""
    if ctx.release is not None:
        return ctx.release
    root = ctx.releases_root()
    return root.release(root.new_release_name(ctx.target_sha or "", ctx.started))


@dataclasses.dataclass(frozen=True)
class VenvPlan:
    """The venv a deploy would give the new release. ``key`` is empty when it cannot be told
    without the target's files (a plan from git alone, with requirements changed)."""

    key: str
    reuse: bool
    changed: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "reuse": self.reuse, "requirements_changed": self.changed}


def venv_plan(ctx: DeployContext) -> VenvPlan:
    """The key from the target's requirements (its worktree when the plan checked one out; the
    live release's files when git says none changed), and whether a complete venv has it."""
    tree = ctx.worktree
    live_files = requirement_files(ctx.live)
    files = requirement_files(tree) if tree is not None else live_files
    changed = sorted(set(ctx.changed_files) & (set(files) | set(live_files)))
    key = ""
    if tree is not None:
        key = venvs.venv_key(tree, files, venvs.python_version())
    elif not changed and not ctx.unknown_baseline:
        key = venvs.venv_key(ctx.live, live_files, venvs.python_version())
    reuse = bool(key) and venvs.is_complete(ctx.releases_root().venvs_dir / key)
    return VenvPlan(key, reuse, changed)


class BuildStep(Step):
    """A standalone checkout of the target in ROOT/releases, the shared paths linked."""

    name = "build"

    def plan(self, ctx: DeployContext) -> PlannedStep:
        root, release = ctx.releases_root(), planned_release(ctx)
        left = [r.name for r in prune.incomplete(root)]
        removed = f"; first removes unfinished {', '.join(left)}" if left else ""
        return PlannedStep(
            self.name,
            True,
            f"releases/{release.name}: a clone of {(ctx.target_sha or '?')[:10]}, "
            f"the shared paths linked{removed}",
            {"release": release.name, "path": str(release.path), "removes_unfinished": left},
        )

    def run(self, ctx: DeployContext) -> Outcome:
        root = ctx.releases_root()
        switch.clean_temporary_links(root)
        left = prune.remove_incomplete(root)  # builds a failure or a kill left behind
        release = root.release(root.new_release_name(ctx.target_sha or ""))
        root.write_metadata(release.name, sha=ctx.target_sha, complete=False)
        ctx.release = release
        try:
            ctx.git.clone_release(release.path, ctx.target_sha or "", ctx.branch)
        except GitError as exc:
            raise StepFailed(f"Cannot check out {(ctx.target_sha or '')[:10]}: {exc}") from None
        linked = shared.link_shared(release.path, root.shared_dir, shared.load(root))
        removed = f"; removed unfinished {', '.join(left)}" if left else ""
        return Outcome(f"{release.name}, {len(linked)} shared path(s) linked{removed}")


class VenvStep(Step):
    """The release's venv: the one whose key matches (a code-only release: no pip at all), or
    a new one built with pip (or uv) while the old one keeps serving untouched."""

    name = "venv"

    def plan(self, ctx: DeployContext) -> PlannedStep:
        venv = venv_plan(ctx)
        changed = f"{', '.join(venv.changed)} changed" if venv.changed else ""
        if venv.reuse:
            why = f"reuse {venv.key}" + (f" (kept; {changed})" if changed else "")
        elif venv.key:
            how = "uv" if venvs.uv() else "pip"
            why = f"build {venv.key} with {how}: {changed or 'no venv has this key yet'}"
        else:
            why = f"build a new venv: {changed or 'unknown'} (its key is computed from the target's files)"
        return PlannedStep(self.name, True, why, venv.as_dict())

    def run(self, ctx: DeployContext) -> Outcome:
        root, release = ctx.releases_root(), _release(ctx)
        files = requirement_files(release.path)
        key = venvs.venv_key(release.path, files, venvs.python_version())
        ctx.venv_key = key  # recorded even when the build fails: which venv did not build
        args = []
        for rel in files:
            if rel in app_settings.requirements and (release.path / rel).is_file():
                args += ["-r", str(release.path / rel)]
        try:
            built = venvs.ensure(
                root.venvs_dir, key, args, timeout=_timeout(), seed=_serving_venv(root)
            )
        except venvs.VenvError as exc:
            raise StepFailed(f"venv {key}: {exc.message}", output=exc.output) from None
        os.symlink(built.path, release.path / VENV_LINK)
        ctx.venv_built = not built.reused
        ctx.live_project = ctx.live_project or _live_project(ctx)
        ctx.project = dataclasses.replace(ctx.project, repo_dir=release.path, python=built.python)
        root.write_metadata(release.name, venv=key)
        how = "reused" if built.reused else f"built with {built.installer}"
        return Outcome(f"{key} ({how})", built.output, 0)


def _serving_venv(root: ReleasesRoot) -> Path | None:
    """The venv of the release ``current`` names, if it is one of ROOT's for this Python: the
    seed of a new venv."""
    current = root.current()
    if current is None:
        return None
    venv = (current.path / VENV_LINK).resolve()
    ours = venv.parent == root.venvs_dir.resolve()
    return venv if ours and venv.name.startswith(venvs.python_version() + "-") else None


class CompileStep(Step):
    """Bytecode for the release, written once now rather than by the first workers."""

    name = "compile"

    def plan(self, ctx: DeployContext) -> PlannedStep:
        return PlannedStep(self.name, True, f"compileall of releases/{planned_release(ctx).name}")

    def run(self, ctx: DeployContext) -> Outcome:
        release = _release(ctx)
        result = proc.run(
            [ctx.project.python, "-m", "compileall", "-q", str(release.path)],
            env=ctx.project.env(release.path),
            timeout=_timeout(),
        )
        if not result.ok:
            raise _fail_from(result, "compileall")
        return Outcome(f"compileall {release.name}", result.output, 0)


class ReleaseCollectStaticStep(CollectStaticStep):
    """collectstatic from the new release into the one STATIC_ROOT, without ``--clear``: pages
    the old release renders keep finding their hashed files."""

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        return self.decide(ctx, new_packages=ctx.venv_built)

    def plan(self, ctx: DeployContext) -> PlannedStep:
        return PlannedStep(self.name, *self.decide(ctx, new_packages=not venv_plan(ctx).reuse))

    def decide(self, ctx: DeployContext, *, new_packages: bool) -> tuple[bool, str]:
        run, why = super().decide(ctx, new_packages=False)
        if not run and new_packages and "not" not in why:
            return True, "a new venv"
        return run, why

    def undo(self, ctx: DeployContext) -> Outcome | None:
        if not ctx.collected or ctx.live_project is None:
            return None
        old = ctx.live_project
        result = proc.run(
            old.manage(old.repo_dir, "collectstatic", "--noinput"),
            cwd=old.live_dir,
            env=old.env(old.repo_dir),
            timeout=_timeout(),
        )
        if not result.ok:
            raise _fail_from(result, "collectstatic of the previous release")
        return Outcome("the previous release's manifest collected again", result.output, 0)


def _migrations_changed(ctx: DeployContext) -> list[str]:
    return [f for f in ctx.changed_files if "migrations" in PurePosixPath(f).parts[:-1]]


def _hooked(ctx: DeployContext) -> bool:
    """Does the serving master run our readiness hook (a new generation is gated)?"""
    return ctx.master is not None and getattr(ctx.master, "facts", None) is not None


class ReleasePreflightStep(PreflightStep):
    conditional = True

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        return self.decide(ctx, new_venv=ctx.venv_built)

    def plan(self, ctx: DeployContext) -> PlannedStep:
        return PlannedStep(self.name, *self.decide(ctx, new_venv=not venv_plan(ctx).reuse))

    def decide(self, ctx: DeployContext, *, new_venv: bool) -> tuple[bool, str]:
        """One rule for the deploy (the venv was built) and its plan (it would be)."""
        changed = _migrations_changed(ctx)
        if changed:
            return True, f"migrations changed: {', '.join(changed[:3])}"
        if ctx.unknown_baseline:
            return True, "the serving release is unknown to git"
        if new_venv:
            return True, "a new venv"
        if ctx.options.no_reload or not _hooked(ctx):
            return True, "no readiness gate on the reload"
        return False, "no migration changed, same venv: the new workers' readiness gate checks it"


class ReleaseSmokeStep(SmokeStep):
    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        if not ctx.pending_pre and _hooked(ctx) and not ctx.options.no_reload:
            return False, "each new worker requests SMOKE_URLS before it takes traffic"
        return super().should_run(ctx)

    def plan(self, ctx: DeployContext) -> PlannedStep:
        run, why = self.should_run(ctx)
        if run and ReleasePreflightStep().plan(ctx).run:
            return super().plan(ctx)  # the preflight requests them when nothing migrates first
        return PlannedStep(self.name, run, why)


class SwitchStep(Step):
    """``ROOT/current`` renamed to the new release in one step; undone the same way."""

    name = "switch"
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
        root, release = ctx.releases_root(), _release(ctx)
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
        release = _release(ctx)
        master = serving.find_master()
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


def release_steps(extra: list[dict[str, Any]] | None = None) -> list[Step]:
    """The releases layout's pipeline, top to bottom."""
    steps: list[Step] = [
        LockStep(),
        EnvironmentStep(),
        FetchStep(),
        BuildStep(),
        VenvStep(),
        CompileStep(),
        ReleaseCollectStaticStep(),
        ReleasePreflightStep(),
        MigrateStep(),
        ReleaseSmokeStep(),
        SwitchStep(),
        ReloadStep(),
        VerifyStep(),
        ServedFromStep(),
        PostDeployMigrateStep(),
        PruneStep(),
    ]
    return with_extra_steps(steps, extra)


def rollback_steps() -> list[Step]:
    """``deploy --rollback`` in the releases layout: no fetch, pip, collectstatic, migration."""
    return [
        LockStep(),
        EnvironmentStep(),
        RollbackTargetStep(),
        SwitchStep(record=False),
        ReloadStep(),
        VerifyStep(),
        ServedFromStep(),
    ]


def layout_steps(options: DeployOptions) -> list[Step]:
    """The steps for the layout this project runs in (and for a rollback in it)."""
    if not current_layout().is_releases:
        return default_steps()
    return rollback_steps() if options.rollback else release_steps()
