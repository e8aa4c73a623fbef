"""Runs the steps top to bottom, records each as it goes, and on a failure undoes what changed
(code, packages, static files, workers) so that everything matches the previous release."""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable

from django.utils import timezone

from .. import exit_codes, proc
from ..conf import app_settings
from ..exit_codes import CommandFailure
from ..git import Git
from ..models import Deployment, DeploymentStep
from ..notify import notify_admins
from ..signals import deploy_finished, deploy_started
from . import records, worktrees
from .context import DeployContext, NothingToDeploy, StepFailed
from .lock import deploy_lock
from .options import DeployOptions, DeployResult
from .project import Project
from .records import Recorder, StepResult
from .steps import layout_steps
from .steps.base import Step

Status = Deployment.Status
StepStatus = DeploymentStep.Status


def format_line(result: StepResult) -> str:
    """The step's line for the terminal (redacted: a detail may quote a URL with a token). A
    failed step's line has no detail: the deploy's closing message says it, once."""
    duration = "" if result.duration is None else f"{result.duration:6.2f} s"
    detail = "" if result.status == StepStatus.FAILED else proc.redact(result.detail)
    return f"  {result.name:<14} {result.status:<11} {duration:>8}  {detail}".rstrip()


class Runner:
    def __init__(
        self,
        options: DeployOptions,
        deployment: Deployment | None,
        echo: Callable[[str], None],
        steps: list[Step] | None = None,
    ) -> None:
        self.options = options
        self.echo = echo
        self.project = Project.current()
        git = Git(self.project.repo_dir, timeout=float(app_settings.STEP_TIMEOUT))
        self.ctx = DeployContext(
            options,
            self.project,
            git,
            echo,
            deployment=deployment,
            lock=deploy_lock(app_settings.runtime_dir),
            open_record=self._open_and_announce,
        )
        self.recorder = Recorder(deployment, warn=echo)
        self.opened = False
        self.target_reached = False  # a step that decides the target ran (or was skipped)
        self.steps = steps if steps is not None else layout_steps(options)
        self.results: list[StepResult] = []
        self.result_steps: dict[int, Step] = {}  # position of a result -> the step it is of
        self.started = time.monotonic()
        self.started_at = timezone.now()
        self.announced = False
        self.failed_step: Step | None = None

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> DeployResult:
        try:
            for step in self.steps:
                self._run_step(step)
            return self._succeeded()
        except NothingToDeploy as nothing:
            return self._finish(Status.NOTHING, exit_codes.OK, str(nothing))
        except (StepFailed, CommandFailure) as failure:
            return self._failed(failure)
        except KeyboardInterrupt:
            return self._failed(StepFailed(f"{records.CANCELLED} by the operator (interrupt)."))
        except Exception as exc:  # noqa: BLE001 - a bug must still roll back and be recorded
            text = "".join(traceback.format_exception(exc))
            return self._failed(
                StepFailed(f"Unexpected error: {type(exc).__name__}: {exc}", output=text)
            )
        finally:
            self._cleanup()

    def _run_step(self, step: Step) -> None:
        if not step.recorded:  # e.g. the recovery of interrupted deploys, the record's opening
            step.run(self.ctx)
            return
        position = len(self.results)
        self.result_steps[position] = step
        self.target_reached = self.target_reached or step.decides_target
        run, why = step.should_run(self.ctx)
        if not run:
            result = StepResult(step.name, StepStatus.SKIPPED, why)
            self._record(position, result)
            return
        result = StepResult(step.name, StepStatus.RUNNING, why, started_at=timezone.now())
        self.results.append(result)
        self.recorder.save_step(position, result)
        began = time.monotonic()
        try:
            outcome = step.run(self.ctx)
        except (StepFailed, CommandFailure) as failure:
            result.status = StepStatus.FAILED
            result.detail = failure.message
            result.duration = time.monotonic() - began
            if isinstance(failure, StepFailed):
                result.output, result.returncode = failure.output, failure.returncode
            self.failed_step = step
            self._record(position, result, appended=True)
            raise
        except NothingToDeploy as nothing:
            result.status = StepStatus.OK
            result.detail = str(nothing)
            result.duration = time.monotonic() - began
            self._record(position, result, appended=True)
            raise
        except BaseException as exc:
            result.status = StepStatus.FAILED
            result.detail = f"{type(exc).__name__}: {exc}"[:500]
            result.output = "".join(traceback.format_exception(exc))
            result.duration = time.monotonic() - began
            self.failed_step = step
            self._record(position, result, appended=True)
            raise
        result.status = StepStatus.OK
        result.detail = outcome.detail or why
        if step.conditional and why and outcome.detail:
            result.detail = f"{why}: {outcome.detail}"
        result.output = outcome.output
        result.returncode = outcome.returncode
        result.duration = time.monotonic() - began
        self._record(position, result, appended=True)

    def _record(self, position: int, result: StepResult, appended: bool = False) -> None:
        if not appended:
            self.results.append(result)
        self.recorder.save_step(position, result)
        self.recorder.note_release(*self._release())
        self.echo(format_line(result))

    def _release(self) -> tuple[str, str]:
        """(release directory, venv key) of the releases layout; blank in place."""
        release = self.ctx.release
        return (release.name if release is not None else ""), self.ctx.venv_key

    # -- the record ----------------------------------------------------------------------------
    def _open_and_announce(self) -> None:
        """OpenRecordStep: nothing changed so far, the target is known: the record starts."""
        self._open_record()
        self._announce()

    def _open_record(self) -> None:
        """Create the record (or take over the queued one), with the steps done so far."""
        ctx = self.ctx
        values = records.new_record_values(self.options, self.started_at)
        if ctx.target_sha:
            values.update(
                ref=(ctx.ref or "")[:255],
                previous_sha=ctx.previous_sha or "",
                target_sha=ctx.target_sha,
                subject=(ctx.target_subject or "")[:500],
                commits=[[c.sha, c.subject] for c in ctx.commits],
            )
        values["release_dir"], values["venv_key"] = self._release()
        self.recorder.open(values, [s.name for s in self.steps if s.recorded], self.results)
        self.opened = True
        deployment = self.recorder.deployment
        if deployment is not None and deployment.pk:
            ctx.deployment = deployment
            ctx.lock.update(
                deployment_id=deployment.pk,
                trigger=self.options.trigger,
                ref=self.options.ref or "",
            )

    def _announce(self) -> None:
        if self.recorder.deployment is not None and self.recorder.deployment.pk:
            deploy_started.send_robust(sender=Deployment, deployment=self.recorder.deployment)
            self.announced = True

    # -- endings -------------------------------------------------------------------------------
    def _succeeded(self) -> DeployResult:
        ctx = self.ctx
        window = f"; mixed window {ctx.mixed_window:.2f} s" if ctx.mixed_window is not None else ""
        migrated = (
            f"; applied {', '.join(ctx.applied_migrations)}" if ctx.applied_migrations else ""
        )
        reload_note = " (not reloaded: --no-reload)" if self.options.no_reload else ""
        verb = "Rolled back to" if self.options.rollback else "Deployed"
        message = (
            f"{verb} {(ctx.target_sha or '')[:10]} ({ctx.target_subject}) in "
            f"{time.monotonic() - self.started:.1f} s{window}{migrated}{reload_note}."
        )
        return self._finish(Status.SUCCEEDED, exit_codes.OK, message)

    def _failed(self, failure: StepFailed | CommandFailure) -> DeployResult:
        ctx = self.ctx
        exit_code = failure.exit_code
        message = failure.message
        failed_step = self.failed_step
        if ctx.live_changed and (failed_step is None or failed_step.rollback_on_failure):
            self.echo(f"Rolling back to {(ctx.previous_sha or '?')[:10]} ...")
            rolled, problem = self._rollback()
            if rolled:
                status = Status.ROLLED_BACK
                exit_code = exit_codes.DOWN if exit_code == exit_codes.DOWN else exit_codes.FAILED
                message += f" Rolled back: {(ctx.previous_sha or '?')[:10]} serves again."
            else:
                status = Status.FAILED
                exit_code = exit_codes.DOWN
                message += f" ROLLBACK FAILED ({problem}): the site may be down or half-deployed; it needs a person."
            if ctx.applied_migrations:
                message += (
                    f" Applied migrations were not reversed: {', '.join(ctx.applied_migrations)} "
                    "(the migration safety check refuses operations the previous release cannot run against)."
                )
        else:
            status = Status.FAILED
            if exit_code == exit_codes.OK:
                exit_code = exit_codes.FAILED
        return self._finish(status, exit_code, message)

    def _rollback(self) -> tuple[bool, str]:
        """Undo in dependency order; every undo is recorded as a ``rollback:NAME`` step."""
        undone = sorted(
            (s for s in self.steps if s.undo_rank is not None), key=lambda s: s.undo_rank or 0
        )
        for step in undone:
            position = len(self.results)
            result = StepResult(
                f"{records.UNDO_PREFIX}:{step.name}", StepStatus.RUNNING, started_at=timezone.now()
            )
            began = time.monotonic()
            try:
                outcome = step.undo(self.ctx)
            except (StepFailed, CommandFailure) as exc:
                result.status, result.detail = StepStatus.FAILED, exc.message
                result.output = getattr(exc, "output", "")
                result.duration = time.monotonic() - began
                self._record(position, result)
                return False, exc.message
            except Exception as exc:  # noqa: BLE001
                result.status, result.detail = StepStatus.FAILED, f"{type(exc).__name__}: {exc}"
                result.output = "".join(traceback.format_exception(exc))
                result.duration = time.monotonic() - began
                self._record(position, result)
                return False, result.detail
            if outcome is None:
                continue
            result.status, result.detail, result.output = (
                StepStatus.OK,
                outcome.detail,
                outcome.output,
            )
            result.duration = time.monotonic() - began
            self._record(position, result)
            self._mark_rolled_back(step)
        return True, ""

    def _mark_rolled_back(self, step: Step) -> None:
        for position, result in enumerate(self.results):
            if self.result_steps.get(position) is step and result.status == StepStatus.OK:
                result.status = StepStatus.ROLLED_BACK
                self.recorder.save_step(position, result)

    def _finish(self, status: str, exit_code: int, message: str) -> DeployResult:
        ctx = self.ctx
        message = proc.redact(message)
        if not self.opened and (self.recorder.deployment is not None or self.target_reached):
            # a queued record (admin, webhook) that failed before it could start, or a deploy
            # that ended at the fetch (nothing to deploy, a refused release)
            self._open_record()
        target = {}
        if ctx.target_sha:
            target = {
                "ref": (ctx.ref or "")[:255],
                "previous_sha": ctx.previous_sha or "",
                "target_sha": ctx.target_sha,
                "subject": (ctx.target_subject or "")[:500],
            }
        self.recorder.update(
            **target,
            status=status,
            message=message,
            finished_at=timezone.now(),
            applied_migrations=list(ctx.applied_migrations),
            mixed_window_seconds=ctx.mixed_window,
            unsafe_migrations_acknowledged=ctx.unsafe_acknowledged,
        )
        self.recorder.drop_pending()
        deployment = self.recorder.deployment
        if deployment is not None and deployment.pk and status != Status.NOTHING:
            deploy_finished.send_robust(sender=Deployment, deployment=deployment, status=status)
        if status in (Status.FAILED, Status.ROLLED_BACK):
            ident = f"#{deployment.pk} " if deployment is not None and deployment.pk else ""
            notify_admins(f"Deploy {ident}{status}: {(ctx.target_sha or '')[:10]}", message)
        self.echo(message)
        return DeployResult(
            exit_code=exit_code,
            status=str(status),
            message=message,
            deployment_id=deployment.pk if deployment is not None else None,
            target_sha=ctx.target_sha,
            previous_sha=ctx.previous_sha,
            steps=[r.as_dict() for r in self.results],
            mixed_window=ctx.mixed_window,
            applied_migrations=list(ctx.applied_migrations),
            duration=time.monotonic() - self.started,
        )

    def _cleanup(self) -> None:
        if self.ctx.worktree is not None:
            with contextlib.suppress(Exception):
                worktrees.remove_worktree(self.ctx.git, self.ctx.worktree)
        self.ctx.lock.release()
