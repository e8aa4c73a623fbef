"""ZERODEPLOY['EXTRA_STEPS']: a command of the project's, run as a step."""

from __future__ import annotations

from ... import proc
from ..context import DeployContext, Outcome
from .base import Step, failure_from, step_timeout


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
        result = proc.run(argv, cwd=ctx.project.code_dir(tree), env=env, timeout=step_timeout())
        if not result.ok:
            raise failure_from(result, f"{self.name} ({' '.join(self.command)})")
        return Outcome(result.last_lines(1)[:200], result.output, 0)
