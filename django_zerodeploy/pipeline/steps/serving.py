"""The workers: the reload onto the new release, and the check that they serve it."""

from __future__ import annotations

import time
from typing import ClassVar

from ... import exit_codes, gunicorn
from ...conf import app_settings
from ...exit_codes import CommandFailure
from ...gunicorn.result import OLD_RETIRED, ReloadResult
from ...gunicorn.strategies.context import HOOKLESS_NOTE
from .. import serving
from ..context import DeployContext, Outcome, StepFailed
from .base import Step


class ReloadStep(Step):
    name = "reload"
    changes_live = True
    undo_rank = 5  # last: the workers boot the previous release as the others left it

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        if ctx.options.no_reload:
            return False, "--no-reload"
        return True, f"strategy {app_settings.RELOAD_STRATEGY}"

    def _reload(self, lines: list[str], what: str, *, undoing: bool) -> ReloadResult:
        """One reload, its refusal or failure a StepFailed saying ``what`` was reloaded. A
        failed undo leaves the site down (exit 3); a failed reload forward only when Gunicorn
        was left without workers."""
        # run_preflight=False: the preflight step checked this very commit in a fresh
        # interpreter already, and the readiness hook refuses a broken worker anyway; a second
        # import here would only lengthen the window in which old workers see new files.
        try:
            result = gunicorn.reload(
                strategy=app_settings.RELOAD_STRATEGY,
                pidfile=app_settings.GUNICORN_PIDFILE,
                unit=app_settings.GUNICORN_SYSTEMD_UNIT,
                timeout=app_settings.RELOAD_TIMEOUT,
                echo=lines.append,
                run_preflight=False,
            )
        except CommandFailure as exc:
            down = undoing or exc.exit_code == exit_codes.DOWN
            raise StepFailed(
                f"{what} refused: {exc.message}",
                output="\n".join(lines),
                exit_code=exit_codes.DOWN if down else exit_codes.FAILED,
            ) from None
        if not result.ok:
            down = undoing or result.exit_code == exit_codes.DOWN
            raise StepFailed(
                f"{what} failed: {result.message}",
                output="\n".join(lines),
                returncode=result.exit_code,
                exit_code=exit_codes.DOWN if down else exit_codes.FAILED,
            )
        return result

    def run(self, ctx: DeployContext) -> Outcome:
        ctx.reload_attempted = True
        lines: list[str] = []
        began = time.monotonic()
        result = self._reload(lines, "Reload", undoing=False)
        output = "\n".join(lines)
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
        result = self._reload(lines, "Reload of the previous release", undoing=True)
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
            master = serving.project_master()
        except CommandFailure:
            master = ctx.master
        ok, seen = serving.wait_for_release(ctx.target_sha, master, timeout=self.wait_seconds)
        if not ok:
            raise StepFailed(f"Verify: expected release {ctx.target_sha[:10]}, but {seen}.")
        return Outcome(seen)
