"""The release, built and checked in the worktree while the previous one serves: its packages,
static files, the preflight (one fresh interpreter running the new code) and the smoke URLs."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from django.apps import apps
from django.conf import settings

from ... import proc
from ...conf import app_settings
from ...preflight import preflight
from .. import migrations, packages
from ..context import DeployContext, Outcome, PlannedStep, StepFailed
from .base import Step, failure_from, step_timeout


def requirement_files(tree: Path) -> list[str]:
    """REQUIREMENTS and the files they include (-r/-c), relative to the checkout."""
    seen: list[str] = []
    todo = list(app_settings.requirements)
    while todo:
        rel = str(PurePosixPath(todo.pop(0)))
        if rel in seen:
            continue
        seen.append(rel)
        path = tree / rel
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            parts = line.strip().split(None, 1)
            if len(parts) == 2 and parts[0] in ("-r", "-c", "--requirement", "--constraint"):
                included = PurePosixPath(rel).parent / parts[1].strip()
                todo.append(str(included))
    return seen


def install_needed(ctx: DeployContext) -> tuple[bool, str]:
    """Would the packages change: a requirements file changed (or --install)."""
    tree = ctx.worktree or ctx.live
    files = [f for f in requirement_files(tree) if (tree / f).is_file()]
    if not files:
        return False, f"no requirements file ({', '.join(app_settings.requirements)})"
    if ctx.options.install:
        return True, "--install"
    if ctx.unknown_baseline:
        return True, "the serving release is unknown to git"
    old_files = set(requirement_files(ctx.live))
    changed = sorted(set(ctx.changed_files) & (set(files) | old_files))
    if changed:
        return True, f"{', '.join(changed)} changed"
    return False, "requirements unchanged"


class InstallStep(Step):
    name = "install"
    changes_live = True
    undo_rank = 3
    conditional = True

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        return install_needed(ctx)

    def _pip(self, ctx: DeployContext, tree: Path) -> proc.ProcResult:
        args = [
            ctx.project.python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ]
        for rel in requirement_files(tree):
            if (tree / rel).is_file() and rel in app_settings.requirements:
                args += ["-r", str(tree / rel)]
        return proc.run(
            args, cwd=tree, env=ctx.project.env(tree, ours=True), timeout=step_timeout()
        )

    def run(self, ctx: DeployContext) -> Outcome:
        env = ctx.project.env(ctx.new_code, ours=True)
        try:
            ctx.packages_before = packages.snapshot(ctx.project.python, env, step_timeout())
        except packages.PackageError as exc:
            raise StepFailed(
                f"Cannot list the installed packages: {exc.message}", output=exc.output
            ) from None
        ctx.installed = True  # even a failed pip may have changed packages: undo either way
        result = self._pip(ctx, ctx.new_code)
        if not result.ok:
            raise failure_from(result, "pip install")
        done = [ln for ln in result.stdout.splitlines() if ln.startswith("Successfully installed")]
        return Outcome(done[-1] if done else "requirements already satisfied", result.output, 0)

    def undo(self, ctx: DeployContext) -> Outcome | None:
        """The exact package set from before the install (see packages.py), not a reinstall of
        the previous requirements: what the release added is removed, upgrades are reverted."""
        if not ctx.installed or ctx.packages_before is None:
            return None
        try:
            done = packages.restore(
                ctx.project.python,
                ctx.project.env(ctx.live, ours=True),
                ctx.packages_before,
                step_timeout(),
            )
        except packages.PackageError as exc:
            raise StepFailed(
                f"Restoring the previous packages failed: {exc.message}", output=exc.output
            ) from None
        return Outcome(done)


class PreflightStep(Step):
    name = "preflight"

    def plan(self, ctx: DeployContext) -> PlannedStep:
        return PlannedStep(
            self.name,
            True,
            "manage.py check, WSGI import, URLconf, migration plan, in the worktree",
        )

    def run(self, ctx: DeployContext) -> Outcome:
        tree = ctx.new_code
        smoke_urls = list(app_settings.SMOKE_URLS)
        # One fresh interpreter running the new code: WSGI import, URLconf, system checks,
        # migration plan, smoke URLs (one Django start instead of one per check).
        found = preflight(
            ctx.project.code_dir(tree),
            python=ctx.project.python,
            env=ctx.project.env(tree),
            manage_check=True,
            smoke_urls=smoke_urls,
            migration_plan=True,
            allow_unsafe=ctx.options.allow_unsafe_migrations,
            timeout=step_timeout(),
        )
        output = found.output
        # a smoke failure is judged below: pending migrations may explain it
        if not found.ok and found.step != "smoke":
            raise StepFailed(f"Preflight ({found.step}): {found.message}", output=output)
        plan = migrations.parse_plan(
            found.plan_returncode,
            found.plan_stdout,
            "\n".join(filter(None, [found.plan_stdout, found.plan_stderr])),
        )
        ctx.pending = plan.pending
        ctx.migration_errors = plan.errors
        if not plan.ok:
            raise StepFailed(
                "Migration plan refused: " + " ".join(plan.errors)[:1500],
                output=plan.output,
                returncode=plan.returncode,
            )
        # plan.unsafe lists only UNacknowledged operations (empty once acknowledged): look at
        # the acknowledged migrations, by --allow-unsafe-migrations or by their own marker
        ctx.unsafe_acknowledged = any(
            op.classification == "unsafe"
            for m in plan.pending
            if m.acknowledged
            for op in m.operations
        )
        if found.smoke_failures:  # against the database as it is now
            if not ctx.pending_pre:
                raise StepFailed("Smoke: " + "; ".join(found.smoke_failures) + ".", output=output)
        elif smoke_urls and not ctx.pending_pre:
            # nothing to migrate first: the smoke test already ran against the final schema
            ctx.smoke_done = True
        parts = ["check, WSGI import, URLconf"]
        if ctx.smoke_done:
            parts.append(f"{len(smoke_urls)} smoke URL(s)")
        pending = ", ".join(
            f"{m.label}{' (post)' if m.stage == 'post' else ''}" for m in ctx.pending
        )
        parts.append(f"pending migrations: {pending or 'none'}")
        parts[0] += f" ({found.patterns} URL patterns)"
        return Outcome("; ".join(parts), "\n".join(filter(None, [output, plan.output])), 0)


def _static_sources(ctx: DeployContext) -> list[str]:
    """Folders (relative to the checkout) that collectstatic reads from this project."""
    rels = []
    for config in apps.get_app_configs():
        path = Path(config.path) / "static"
        try:
            rels.append(str(path.resolve().relative_to(ctx.live)))
        except ValueError:
            continue
    for entry in getattr(settings, "STATICFILES_DIRS", []) or []:
        folder = entry[1] if isinstance(entry, tuple | list) else entry
        try:
            rels.append(str(Path(folder).resolve().relative_to(ctx.live)))
        except ValueError:
            continue
    return rels


class CollectStaticStep(Step):
    """Collects the release's static files into STATIC_ROOT before the preflight, from the
    worktree (linked to the live STATIC_ROOT): the preflight's and the smoke's ``{% static %}``
    must find the new files in a manifest storage. No ``--clear``: the hashed files the previous
    release references stay; its manifest is put back exactly if the deploy is undone."""

    name = "collectstatic"
    changes_live = True
    undo_rank = 4
    conditional = True

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        return self.decide(ctx, new_packages=ctx.installed)

    def plan(self, ctx: DeployContext) -> PlannedStep:
        return PlannedStep(self.name, *self.decide(ctx, new_packages=install_needed(ctx)[0]))

    def decide(self, ctx: DeployContext, *, new_packages: bool) -> tuple[bool, str]:
        """The rule, given whether the packages changed (did, for the deploy; would, for a plan)."""
        if not apps.is_installed("django.contrib.staticfiles"):
            return False, "django.contrib.staticfiles is not installed"
        if not getattr(settings, "STATIC_ROOT", None):
            return False, "STATIC_ROOT is not set"
        if ctx.options.collectstatic:
            return True, "--collectstatic"
        if new_packages:
            return True, "installed packages changed"
        if ctx.unknown_baseline:
            return True, "the serving release is unknown to git"
        manifest = _manifest_path()
        if manifest is not None and not manifest.is_file():
            return True, f"no manifest yet ({manifest})"
        sources = _static_sources(ctx)
        changed = [
            f
            for f in ctx.changed_files
            if "static" in PurePosixPath(f).parts[:-1]
            or any(f.startswith(s.rstrip("/") + "/") for s in sources)
        ]
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            return True, f"static files changed: {', '.join(changed[:3])}{more}"
        return False, "static sources unchanged"

    def _collect(self, ctx: DeployContext, tree: Path) -> proc.ProcResult:
        return proc.run(
            ctx.project.manage(tree, "collectstatic", "--noinput"),
            cwd=ctx.project.code_dir(tree),
            env=ctx.project.env(tree),
            timeout=step_timeout(),
        )

    def run(self, ctx: DeployContext) -> Outcome:
        manifest = _manifest_path()
        if manifest is not None:
            ctx.manifest_saved = True
            ctx.previous_manifest = manifest.read_bytes() if manifest.is_file() else None
        ctx.collected = True
        result = self._collect(ctx, ctx.new_code)
        if not result.ok:
            raise failure_from(result, "collectstatic")
        return Outcome(result.last_lines(1), result.output, 0)

    def undo(self, ctx: DeployContext) -> Outcome | None:
        if not ctx.collected:
            return None
        result = self._collect(ctx, ctx.live)  # the live tree holds the previous release again
        if not result.ok:
            raise failure_from(result, "collectstatic of the previous release")
        manifest = _manifest_path()
        if manifest is not None and ctx.manifest_saved:
            if ctx.previous_manifest is None:
                manifest.unlink(missing_ok=True)
            else:
                manifest.write_bytes(ctx.previous_manifest)
        return Outcome("previous static files and manifest back", result.output, 0)


def _manifest_path() -> Path | None:
    """The manifest file of a manifest static files storage (whitenoise's included), or None."""
    from django.contrib.staticfiles.storage import staticfiles_storage

    try:
        name = getattr(staticfiles_storage, "manifest_name", None)
        location = getattr(staticfiles_storage, "location", None)
    except Exception:  # noqa: BLE001 - a storage that cannot even load says so in collectstatic
        return None
    if not name or not location:
        return None
    return Path(location) / str(name)


class SmokeStep(Step):
    name = "smoke"
    conditional = True

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        urls = list(app_settings.SMOKE_URLS)
        if not urls:
            return False, "SMOKE_URLS is empty"
        if ctx.smoke_done:
            return False, "passed in preflight (no migrations to apply first)"
        return True, ", ".join(urls)[:300]

    def plan(self, ctx: DeployContext) -> PlannedStep:
        if app_settings.SMOKE_URLS and not ctx.pending_pre:
            return PlannedStep(self.name, True, "in the preflight (no migrations to apply first)")
        return super().plan(ctx)

    def plan_without_code(self, ctx: DeployContext) -> PlannedStep:
        if app_settings.SMOKE_URLS:
            return PlannedStep(self.name, True, "in the preflight, or after the migrations")
        return self.plan(ctx)

    def run(self, ctx: DeployContext) -> Outcome:
        tree = ctx.new_code
        result = preflight(
            ctx.project.code_dir(tree),
            python=ctx.project.python,
            env=ctx.project.env(tree),
            smoke_urls=list(app_settings.SMOKE_URLS),
            timeout=step_timeout(),
        )
        if not result.ok:
            raise StepFailed(f"Smoke ({result.step}): {result.message}", output=result.output)
        ctx.smoke_done = True
        return Outcome(result.message, result.output, 0)
