"""The deploy, as a list of steps read top to bottom (``default_steps()``).

Each step says whether it needs to run and why (the same answer feeds ``--dry-run``), does its
work, and, when it changes something live, knows how to undo it. Work that can fail runs in a
worktree beside the live checkout; the live tree moves only once the new release has passed its
preflight, so that old workers reading files lazily see new files for as short a time as possible.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import psutil
from django.apps import apps
from django.conf import settings

from .. import exit_codes, gunicorn, proc, shared_paths
from ..conf import app_settings, extra_steps_problem
from ..exit_codes import CommandFailure
from ..git import GitError, is_sha, validate_ref
from ..gunicorn.result import OLD_RETIRED
from ..gunicorn.strategies.context import HOOKLESS_NOTE
from ..preflight import preflight
from . import migrations, packages, records, serving
from .context import DeployContext, NothingToDeploy, Outcome, PlannedStep, StepFailed


class Step:
    """One step. ``should_run`` gives (run?, why); ``run`` does it; ``undo`` reverts it."""

    name: ClassVar[str] = ""
    # False: a failure here does not roll the release back (e.g. contract migrations after the
    # reload, which the previous code cannot run against)
    rollback_on_failure: ClassVar[bool] = True
    # True: runs only when needed; its record says why it ran as well as what it did
    conditional: ClassVar[bool] = False
    # True: the target is known once this step ran: the deploy's record is opened after it
    opens_record: ClassVar[bool] = False

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        return True, ""

    def plan(self, ctx: DeployContext) -> PlannedStep:
        """What the step would do, for the dry run: decided from ``ctx`` as the steps before
        it left it there, without running them (so never from what they would have set)."""
        return PlannedStep(self.name, *self.should_run(ctx))

    def run(self, ctx: DeployContext) -> Outcome:
        raise NotImplementedError

    def undo(self, ctx: DeployContext) -> Outcome | None:
        """Put back what ``run`` changed; None when there is nothing to undo."""
        return None


def _timeout() -> float:
    return float(app_settings.STEP_TIMEOUT)


def _fail_from(result: proc.ProcResult, what: str) -> StepFailed:
    why = f"timed out after {_timeout():g} s" if result.timed_out else f"exited {result.returncode}"
    last = result.last_lines(1)
    return StepFailed(
        f"{what} {why}" + (f": {last}" if last else ""),
        output=result.output,
        returncode=result.returncode,
    )


# -- before anything changes -------------------------------------------------------------------
class LockStep(Step):
    name = "lock"

    def run(self, ctx: DeployContext) -> Outcome:
        ctx.lock.acquire(
            wait=ctx.options.wait_lock,
            on_wait=lambda holder: ctx.echo(
                f"  waiting up to {ctx.options.wait_lock:g} s for {holder.describe()}"
            ),
        )
        return Outcome(f"taken by pid {os.getpid()} ({ctx.lock.path})")


class EnvironmentStep(Step):
    """Everything a deploy needs before it changes anything; each refusal is a usage error."""

    name = "environment"

    def run(self, ctx: DeployContext) -> Outcome:
        if not shutil.which("git"):
            raise CommandFailure("git is not on PATH: install git.", exit_codes.USAGE)
        details = [_branch(ctx), _clean(ctx)]
        ctx.shared = shared_paths.shared_paths(ctx.git, ctx.live)
        shared_paths.refuse_tracked(ctx.git, ctx.live, ctx.shared)
        details.append(f"{_free_mb(ctx)} MB free")
        if not ctx.options.no_reload:
            details += _serving_master(ctx)
        return Outcome(", ".join(details))


def _branch(ctx: DeployContext) -> str:
    """HEAD, the branch and the remote branch it deploys from (validated refs)."""
    try:
        ctx.head_sha = ctx.git.head()
    except GitError as exc:
        raise CommandFailure(
            f"{ctx.live} is not a git checkout with a commit: {exc}", exit_codes.USAGE
        ) from None
    ctx.branch = ctx.git.current_branch()
    if not ctx.branch:
        raise CommandFailure(
            f"{ctx.live} has a detached HEAD: check out the branch to deploy "
            "(git switch BRANCH) so that the deploy can move it.",
            exit_codes.USAGE,
        )
    ctx.remote = app_settings.REMOTE
    if app_settings.BRANCH:
        ctx.remote_branch = app_settings.BRANCH
    else:
        upstream = ctx.git.upstream(ctx.branch)
        if upstream:
            ctx.remote, ctx.remote_branch = upstream
        elif not ctx.options.ref and not ctx.options.rollback:
            raise CommandFailure(
                f"Branch {ctx.branch!r} has no upstream: set ZERODEPLOY['BRANCH'], run "
                f"git branch --set-upstream-to={ctx.remote}/{ctx.branch}, or pass --ref.",
                exit_codes.USAGE,
            )
    try:
        validate_ref(ctx.remote)
        if ctx.remote_branch:
            validate_ref(ctx.remote_branch)
    except GitError as exc:
        raise CommandFailure(f"Bad REMOTE or BRANCH setting: {exc}", exit_codes.USAGE) from None
    return f"branch {ctx.branch} -> {ctx.remote}/{ctx.remote_branch or ctx.options.ref}"


def _clean(ctx: DeployContext) -> str:
    modified = ctx.git.modified_tracked_files()
    if modified:
        shown = ", ".join(modified[:20]) + (
            f" and {len(modified) - 20} more" if len(modified) > 20 else ""
        )
        raise CommandFailure(
            f"Tracked files are modified in {ctx.live}: {shown}. Commit them upstream or "
            "restore them (git restore FILE) before deploying; the deploy never overwrites them.",
            exit_codes.USAGE,
        )
    return "clean"


def _free_mb(ctx: DeployContext) -> int:
    free_mb = min(
        psutil.disk_usage(str(ctx.live)).free,
        psutil.disk_usage(str(app_settings.runtime_dir)).free,
    ) // (1024 * 1024)
    if free_mb < app_settings.MIN_FREE_DISK_MB:
        raise CommandFailure(
            f"Only {free_mb} MB free (MIN_FREE_DISK_MB is {app_settings.MIN_FREE_DISK_MB}): "
            "free some disk space first.",
            exit_codes.USAGE,
        )
    return free_mb


def _serving_master(ctx: DeployContext) -> list[str]:
    ctx.master = serving.find_master()
    serving.require_reload_permission(ctx.master)
    # what is checked is what will serve: preflight, migrate, collectstatic and smoke run with
    # the environment the master (and so its workers) got, e.g. from systemd
    ctx.project = dataclasses.replace(ctx.project, base_env=ctx.master.child_environ)
    return [
        f"Gunicorn master {getattr(ctx.master, 'pid', '?')}",
        "release subprocesses " + ctx.master.environ_note,
    ]


# git's words when another fetch (e.g. a dry run's, which takes no lock) updates the same refs
_REF_LOCK_RACE = re.compile(
    r"cannot lock ref|\.lock'?: File exists|some local refs could not be updated", re.IGNORECASE
)


def _fetch(ctx: DeployContext) -> None:
    """``git fetch``, once more after a pause if a concurrent fetch held a ref lock."""
    try:
        ctx.git.fetch(ctx.remote)
    except GitError as exc:
        if not _REF_LOCK_RACE.search(str(exc)):
            raise
        time.sleep(1)
        ctx.git.fetch(ctx.remote)


class FetchStep(Step):
    name = "fetch"
    opens_record = True
    fetch = True  # False: use the refs fetched last (the dry run while another deploy runs)

    def run(self, ctx: DeployContext) -> Outcome:
        options = ctx.options
        if self.fetch:
            try:
                _fetch(ctx)
            except GitError as exc:
                if not options.rollback:
                    raise StepFailed(f"Cannot fetch {ctx.remote}: {exc}") from None
                # a rollback goes back to a commit the checkout already has: no network needed
                ctx.echo(
                    f"  warning: cannot fetch {ctx.remote} ({exc}); rolling back with local commits"
                )
        if ctx.options.no_reload:
            ctx.serving, ctx.serving_source = ({ctx.head_sha} if ctx.head_sha else set()), "HEAD"
        else:
            ctx.serving, ctx.serving_source = serving.serving_releases(ctx.master, ctx.head_sha)
        ctx.target_sha, ctx.ref = self._target(ctx)
        ctx.target_subject = ctx.git.commit(ctx.target_sha).subject
        ctx.previous_sha = self._previous(ctx)
        ctx.baselines = self._baselines(ctx)
        short = ctx.target_sha[:10]
        if (
            not options.force
            and not ctx.interrupted
            and ctx.serving == {ctx.target_sha}
            and ctx.head_sha == ctx.target_sha
        ):
            raise NothingToDeploy(
                f"Nothing to deploy: {short} ({ctx.target_subject}) already serves "
                f"(according to the {ctx.serving_source})."
            )
        if not options.force and not options.rollback:
            bad = records.bad_release(ctx.target_sha)
            if bad is not None:
                raise StepFailed(
                    f"Release {short} was rolled back by deployment #{bad.pk} ({bad.message.strip()[:200]}). "
                    "Push a newer commit, or use --force to deploy it anyway."
                )
        ctx.commits = []
        if ctx.previous_sha:
            try:
                ctx.commits = ctx.git.log(ctx.previous_sha, ctx.target_sha, limit=200)
            except GitError:
                ctx.commits = []
        ctx.changed_files = self._changed(ctx)
        where = ", ".join(sorted(s[:10] for s in ctx.serving)) or "nothing"
        return Outcome(
            f"{ctx.ref}: {where} -> {short} ({ctx.target_subject}); "
            f"{len(ctx.commits)} commit(s), {len(ctx.changed_files)} file(s) changed"
        )

    def _target(self, ctx: DeployContext) -> tuple[str, str]:
        options = ctx.options
        if options.rollback:
            sha, label = records.rollback_target(
                options.rollback, ctx.serving, ctx.head_sha, ctx.git
            )
            return sha, label
        if options.ref:
            for candidate in (f"{ctx.remote}/{options.ref}", options.ref):
                try:
                    return ctx.git.resolve(candidate), options.ref
                except GitError:
                    continue
            raise CommandFailure(
                f"--ref {options.ref!r} names no branch, tag or commit in {ctx.remote} or locally.",
                exit_codes.USAGE,
            )
        ref = f"{ctx.remote}/{ctx.remote_branch}"
        try:
            return ctx.git.resolve(ref), ref
        except GitError:
            raise CommandFailure(
                f"{ref} does not exist after fetching: check REMOTE and BRANCH.", exit_codes.USAGE
            ) from None

    def _baselines(self, ctx: DeployContext) -> set[str]:
        """Releases the live state may hold, as full commit ids. What workers or HEALTHZ_URL
        report is not trusted: a name (a RELEASE_ID tag) is resolved as a validated ref; what
        git cannot resolve means git cannot tell what changed, so everything is assumed to."""
        shas = set()
        for found in (*ctx.serving, ctx.head_sha, *records.interrupted_shas(ctx.interrupted)):
            if not found:
                continue
            if is_sha(found):
                shas.add(found)
                continue
            try:
                shas.add(ctx.git.resolve(found))
            except GitError:
                ctx.unknown_baseline = True
        return shas

    def _previous(self, ctx: DeployContext) -> str | None:
        """The release to roll back to: the one serving, if git knows it; else HEAD."""
        for sha in sorted(ctx.serving):
            if sha != ctx.target_sha and is_sha(sha) and _is_commit(ctx, sha):
                return sha
        if ctx.serving == {ctx.target_sha}:
            return ctx.target_sha
        return ctx.head_sha

    def _changed(self, ctx: DeployContext) -> list[str]:
        changed: set[str] = set()
        for base in ctx.baselines:
            if base == ctx.target_sha:
                continue
            try:
                changed.update(ctx.git.changed_files(base, ctx.target_sha))
            except GitError:
                ctx.unknown_baseline = True
        return sorted(changed)


def _is_commit(ctx: DeployContext, sha: str) -> bool:
    try:
        return ctx.git.resolve(sha) == sha
    except GitError:
        return False


class PrepareStep(Step):
    name = "prepare"

    def run(self, ctx: DeployContext) -> Outcome:
        path = records.worktrees_dir() / f"{ctx.target_sha[:12]}-{os.getpid()}"
        # set first: a failed or timed-out ``worktree add`` may leave half a worktree to remove
        ctx.worktree = path
        try:
            ctx.git.worktree_add(path, ctx.target_sha)
        except GitError as exc:
            raise StepFailed(f"Cannot prepare a worktree of {ctx.target_sha[:10]}: {exc}") from None
        # the live checkout's own state (.env, SQLite, media, static, venv...) seen from the
        # worktree: what the preflight checks is what the workers will run with
        linked = shared_paths.link_into(path, ctx.live, ctx.shared or shared_paths.SharedPaths())
        return Outcome(
            f"worktree {path}; linked {len(linked)} live path(s)",
            "linked from the live checkout:\n" + "\n".join(linked) if linked else "",
            0,
        )


# -- the release, in the worktree --------------------------------------------------------------
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
        return proc.run(args, cwd=tree, env=ctx.project.env(tree, ours=True), timeout=_timeout())

    def run(self, ctx: DeployContext) -> Outcome:
        env = ctx.project.env(ctx.new_code, ours=True)
        try:
            ctx.packages_before = packages.snapshot(ctx.project.python, env, _timeout())
        except packages.PackageError as exc:
            raise StepFailed(
                f"Cannot list the installed packages: {exc.message}", output=exc.output
            ) from None
        ctx.installed = True  # even a failed pip may have changed packages: undo either way
        result = self._pip(ctx, ctx.new_code)
        if not result.ok:
            raise _fail_from(result, "pip install")
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
                _timeout(),
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
            timeout=_timeout(),
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


# -- the live tree ------------------------------------------------------------------------------
class CheckoutStep(Step):
    name = "checkout"

    def plan(self, ctx: DeployContext) -> PlannedStep:
        return PlannedStep(self.name, True, "git reset --keep in the live tree")

    def run(self, ctx: DeployContext) -> Outcome:
        ctx.mixed_window_started = time.monotonic()
        if ctx.head_sha == ctx.target_sha:
            ctx.checked_out = True
            return Outcome(f"{ctx.branch} already at {ctx.target_sha[:10]}")
        ctx.checked_out = True
        try:
            ctx.git.move_branch_to(ctx.target_sha)
        except GitError as exc:
            raise StepFailed(f"git reset --keep {ctx.target_sha[:10]} failed: {exc}") from None
        return Outcome(f"{ctx.branch} at {ctx.target_sha[:10]} (git reset --keep)")

    def undo(self, ctx: DeployContext) -> Outcome | None:
        if not ctx.checked_out or not ctx.previous_sha:
            return None
        try:
            head = ctx.git.head()
            if head != ctx.previous_sha:
                ctx.git.move_branch_to(ctx.previous_sha)
        except GitError as exc:
            raise StepFailed(
                f"Cannot check out {ctx.previous_sha[:10]} again: {exc}", exit_code=exit_codes.DOWN
            ) from None
        return Outcome(f"{ctx.branch} back at {ctx.previous_sha[:10]}")


class MigrateStep(Step):
    """Applies the pre-deploy migrations while the previous release still serves."""

    name = "migrate"
    stage = "pre"
    conditional = True

    def pending(self, ctx: DeployContext) -> list[migrations.PendingMigration]:
        return ctx.pending_pre

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        pending = self.pending(ctx)
        if not pending:
            return (
                False,
                "no unapplied migrations" if self.stage == "pre" else "no post-deploy migrations",
            )
        return True, f"{len(pending)} unapplied: " + ", ".join(m.label for m in pending)[:300]

    def command(self, ctx: DeployContext) -> list[str]:
        """The migrate command, run in the live tree (holding the new code by now)."""
        if migrations.safety_available():
            return ctx.project.manage(
                ctx.live, migrations.SAFETY_COMMAND, "apply", "--stage", self.stage
            )
        return ctx.project.manage(ctx.live, "migrate", "--noinput")

    def run(self, ctx: DeployContext) -> Outcome:
        pending = self.pending(ctx)
        result = proc.run(
            self.command(ctx),
            cwd=ctx.project.live_dir,
            env=ctx.project.env(ctx.live),
            timeout=_timeout(),
        )
        applied = migrations.applied_from_output(result.stdout)
        if not result.ok:
            applied = self._applied_after_failure(ctx, pending, applied)
        ctx.applied_migrations.extend(a for a in applied if a not in ctx.applied_migrations)
        if not result.ok:
            raise _fail_from(result, "migrate")  # the applied ones are listed in the outcome
        return Outcome(f"applied {', '.join(applied) or 'none'}", result.output, 0)

    def _applied_after_failure(
        self, ctx: DeployContext, pending: list[Any], seen: list[str]
    ) -> list[str]:
        """Which of the pending migrations the database holds now (asked, not guessed)."""
        after = migrations.plan(ctx.project, ctx.live, allow_unsafe=True)
        if not after.ok:
            return seen
        still = {m.label for m in after.pending}
        return [m.label for m in pending if m.label not in still]


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
            timeout=_timeout(),
        )

    def run(self, ctx: DeployContext) -> Outcome:
        manifest = _manifest_path()
        if manifest is not None:
            ctx.manifest_saved = True
            ctx.previous_manifest = manifest.read_bytes() if manifest.is_file() else None
        ctx.collected = True
        result = self._collect(ctx, ctx.new_code)
        if not result.ok:
            raise _fail_from(result, "collectstatic")
        return Outcome(result.last_lines(1), result.output, 0)

    def undo(self, ctx: DeployContext) -> Outcome | None:
        if not ctx.collected:
            return None
        result = self._collect(ctx, ctx.live)  # the live tree holds the previous release again
        if not result.ok:
            raise _fail_from(result, "collectstatic of the previous release")
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

    def run(self, ctx: DeployContext) -> Outcome:
        tree = ctx.new_code
        result = preflight(
            ctx.project.code_dir(tree),
            python=ctx.project.python,
            env=ctx.project.env(tree),
            smoke_urls=list(app_settings.SMOKE_URLS),
            timeout=_timeout(),
        )
        if not result.ok:
            raise StepFailed(f"Smoke ({result.step}): {result.message}", output=result.output)
        ctx.smoke_done = True
        return Outcome(result.message, result.output, 0)


class ReloadStep(Step):
    name = "reload"

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        if ctx.options.no_reload:
            return False, "--no-reload"
        return True, f"strategy {app_settings.RELOAD_STRATEGY}"

    def _reload(self, ctx: DeployContext, lines: list[str]) -> Any:
        # run_preflight=False: the preflight step checked this very commit in a fresh
        # interpreter already, and the readiness hook refuses a broken worker anyway; a second
        # import here would only lengthen the window in which old workers see new files.
        return gunicorn.reload(
            strategy=app_settings.RELOAD_STRATEGY,
            pidfile=app_settings.GUNICORN_PIDFILE,
            unit=app_settings.GUNICORN_SYSTEMD_UNIT,
            timeout=app_settings.RELOAD_TIMEOUT,
            echo=lines.append,
            run_preflight=False,
        )

    def run(self, ctx: DeployContext) -> Outcome:
        ctx.reload_attempted = True
        lines: list[str] = []
        began = time.monotonic()
        try:
            result = self._reload(ctx, lines)
        except CommandFailure as exc:
            raise StepFailed(
                f"Reload refused: {exc.message}",
                output="\n".join(lines),
                exit_code=exc.exit_code if exc.exit_code == exit_codes.DOWN else exit_codes.FAILED,
            ) from None
        output = "\n".join(lines)
        if not result.ok:
            code = exit_codes.DOWN if result.exit_code == exit_codes.DOWN else exit_codes.FAILED
            raise StepFailed(
                f"Reload failed: {result.message}",
                output=output,
                returncode=result.exit_code,
                exit_code=code,
            )
        ctx.reloaded = True
        ctx.reload_hooked = result.hooked
        if not result.hooked:
            ctx.echo(f"  note: {HOOKLESS_NOTE}")
        if ctx.mixed_window_started is not None:
            ctx.mixed_window = (began - ctx.mixed_window_started) + result.seconds_until(
                OLD_RETIRED
            )
        ready = f"{result.workers_ready}/{result.workers_expected} workers ready"
        window = ""
        if ctx.mixed_window is not None:
            later = result.seconds_until(OLD_RETIRED, through=True) - result.seconds_until(
                OLD_RETIRED
            )
            window = (
                f"; mixed window {ctx.mixed_window:.2f} s (old master gone {later:.2f} s later)"
            )
        return Outcome(
            f"{result.strategy}: master {result.old_master_pid} -> {result.new_master_pid}, "
            f"{ready}{window}",
            output,
            0,
        )

    def undo(self, ctx: DeployContext) -> Outcome | None:
        if not ctx.reloaded:
            return None
        lines: list[str] = []
        try:
            result = self._reload(ctx, lines)
        except CommandFailure as exc:
            raise StepFailed(
                f"Reload of the previous release refused: {exc.message}",
                output="\n".join(lines),
                exit_code=exit_codes.DOWN,
            ) from None
        if not result.ok:
            raise StepFailed(
                f"Reload of the previous release failed: {result.message}",
                output="\n".join(lines),
                exit_code=exit_codes.DOWN,
            )
        return Outcome(
            f"previous release serving again ({result.workers_ready}/{result.workers_expected} workers ready)",
            "\n".join(lines),
            0,
        )


class VerifyStep(Step):
    name = "verify"
    wait_seconds: ClassVar[float] = 10.0

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        if ctx.options.no_reload:
            return False, "--no-reload"
        if app_settings.HEALTHZ_URL:
            return True, f"GET {app_settings.HEALTHZ_URL}"
        return True, "HEALTHZ_URL unset: the workers' reports"

    def run(self, ctx: DeployContext) -> Outcome:
        if not app_settings.HEALTHZ_URL and not ctx.reload_hooked:
            return Outcome("not verified: Gunicorn runs without the hook and HEALTHZ_URL is unset")
        try:
            master = serving.find_master()
        except CommandFailure:
            master = ctx.master
        ok, seen = serving.wait_for_release(ctx.target_sha, master, timeout=self.wait_seconds)
        if not ok:
            raise StepFailed(f"Verify: expected release {ctx.target_sha[:10]}, but {seen}.")
        return Outcome(seen)


class PostDeployMigrateStep(MigrateStep):
    """Contract migrations, once no old code serves any more. A failure here leaves the new
    release serving: rolling the code back would put old code on a contracted schema."""

    name = "post_migrate"
    stage = "post"
    rollback_on_failure = False

    def pending(self, ctx: DeployContext) -> list[migrations.PendingMigration]:
        return ctx.pending_post

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        if ctx.options.skip_post_migrate and self.pending(ctx):
            return False, "rollout: run once every host serves the new release"
        return super().should_run(ctx)

    def command(self, ctx: DeployContext) -> list[str]:
        return ctx.project.manage(ctx.live, migrations.SAFETY_COMMAND, "apply", "--stage", "post")

    def run(self, ctx: DeployContext) -> Outcome:
        try:
            return super().run(ctx)
        except StepFailed as failure:
            failure.exit_code = exit_codes.DOWN
            failure.message += (
                ". The new release serves; the post-deploy migrations need a person "
                "(the code was not rolled back: the previous release expects the old schema)."
            )
            raise


class ExtraStep(Step):
    """A command from ZERODEPLOY['EXTRA_STEPS'], run in the tree holding the new code: the
    worktree before ``checkout``, the live checkout after it."""

    def __init__(self, name: str, after: str, command: list[str]) -> None:
        self.name = name  # type: ignore[misc]
        self.after = after
        self.command = list(command)

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        return True, f"after {self.after}: {' '.join(self.command)}"[:300]

    def run(self, ctx: DeployContext) -> Outcome:
        argv = list(self.command)
        if argv[0] in ("python", "python3"):
            argv[0] = ctx.project.python  # the project's own interpreter
        tree = ctx.new_code
        env = ctx.project.env(
            tree,
            {
                "ZERODEPLOY_TARGET_SHA": ctx.target_sha or "",
                "ZERODEPLOY_PREVIOUS_SHA": ctx.previous_sha or "",
                "ZERODEPLOY_CODE_DIR": str(ctx.project.code_dir(tree)),
            },
        )
        result = proc.run(argv, cwd=ctx.project.code_dir(tree), env=env, timeout=_timeout())
        if not result.ok:
            raise _fail_from(result, f"{self.name} ({' '.join(self.command)})")
        return Outcome(result.last_lines(1)[:200], result.output, 0)


def default_steps(extra: list[dict[str, Any]] | None = None) -> list[Step]:
    """The pipeline, top to bottom, with EXTRA_STEPS placed after the step they name."""
    steps: list[Step] = [
        LockStep(),
        EnvironmentStep(),
        FetchStep(),
        PrepareStep(),
        InstallStep(),
        CollectStaticStep(),
        PreflightStep(),
        CheckoutStep(),
        MigrateStep(),
        SmokeStep(),
        ReloadStep(),
        VerifyStep(),
        PostDeployMigrateStep(),
    ]
    return with_extra_steps(steps, extra)


def with_extra_steps(steps: list[Step], extra: list[dict[str, Any]] | None = None) -> list[Step]:
    """``steps`` with EXTRA_STEPS (or ``extra``) placed after the step each names."""
    extra = app_settings.EXTRA_STEPS if extra is None else extra
    problem = extra_steps_problem(extra)
    if problem:  # the system check says it first; a queued task must not run it either
        raise CommandFailure(f"ZERODEPLOY['EXTRA_STEPS']: {problem}", exit_codes.USAGE)
    for item in extra:
        names = [s.name for s in steps]
        anchor = item["after"]
        # after the anchor and the extra steps already placed after it, in settings order
        index = names.index(anchor) + 1 if anchor in names else len(steps)
        while (
            index < len(steps)
            and isinstance(steps[index], ExtraStep)
            and steps[index].after == anchor
        ):
            index += 1
        steps.insert(index, ExtraStep(item["name"], anchor, item["command"]))
    return steps


# Order in which changes are undone: code first (the others read it; in the releases layout,
# the switch of ROOT/current), then packages, static files, and last the workers, so that
# they boot the previous release.
UNDO_ORDER = ("checkout", "switch", "install", "collectstatic", "reload")
