"""What every step is: its contract (the class attributes the runner, the records and the dry
run read), and the helpers every family uses (the step timeout, a failed command's message)."""

from __future__ import annotations

from typing import ClassVar

from ... import proc
from ...conf import app_settings
from ..context import DeployContext, Outcome, PlannedStep, StepFailed


class Step:
    """One step. ``should_run`` gives (run?, why); ``run`` does it; ``undo`` reverts it; ``plan``
    says what it would do. The class attributes are its contract, which the runner, the records
    and the dry run read (none of them knows a step by its name)."""

    name: ClassVar[str] = ""
    # True: it changes what the live site runs (code, packages, static files, workers, schema)
    changes_live: ClassVar[bool] = False
    # the order in which ``undo`` runs on a rollback (lowest first; None: nothing to undo): code
    # first (the others read it; in the releases layout, the switch of ROOT/current), then
    # packages, static files, and last the workers, so that they boot the previous release
    undo_rank: ClassVar[int | None] = None
    # False: a failure here does not roll the release back (e.g. contract migrations after the
    # reload, which the previous code cannot run against)
    rollback_on_failure: ClassVar[bool] = True
    # False: a failure here says nothing about the release (it is not refused as bad later)
    blames_release: ClassVar[bool] = True
    # True: runs only when needed; its record says why it ran as well as what it did
    conditional: ClassVar[bool] = False
    # True: the target is known once this step ran
    decides_target: ClassVar[bool] = False
    # True: the deploy's record is opened when this step runs
    opens_record: ClassVar[bool] = False
    # False: the runner runs it without a row in the record or a line on the terminal
    recorded: ClassVar[bool] = True
    # True: it only reads, so the dry run runs it (the plans of the steps after it need it)
    dry_run_runs: ClassVar[bool] = False
    # True: the dry run lists the target's pending migrations for it
    plans_migrations: ClassVar[bool] = False

    def should_run(self, ctx: DeployContext) -> tuple[bool, str]:
        return True, ""

    def plan(self, ctx: DeployContext) -> PlannedStep:
        """What the step would do, for the dry run: decided from ``ctx`` as the steps before
        it left it there, without running them (so never from what they would have set)."""
        return PlannedStep(self.name, *self.should_run(ctx))

    def plan_without_code(self, ctx: DeployContext) -> PlannedStep:
        """The plan from git alone (the admin's GET runs none of the target's code)."""
        return self.plan(ctx)

    def run(self, ctx: DeployContext) -> Outcome:
        raise NotImplementedError

    def undo(self, ctx: DeployContext) -> Outcome | None:
        """Put back what ``run`` changed; None when there is nothing to undo."""
        return None


def innocent_step_names() -> set[str]:
    """Names of the recorded steps whose failure does not make the release a bad one (every
    step class defined, whichever pipeline used it: the records are of past deploys too; an
    unrecorded step writes no row, so its name may be an extra step's)."""
    names, todo = set(), list(Step.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.name and cls.recorded and not cls.blames_release:
            names.add(cls.name)
    return names


def step_timeout() -> float:
    return float(app_settings.STEP_TIMEOUT)


def failure_from(result: proc.ProcResult, what: str) -> StepFailed:
    why = (
        f"timed out after {step_timeout():g} s"
        if result.timed_out
        else f"exited {result.returncode}"
    )
    last = result.last_lines(1)
    return StepFailed(
        f"{what} {why}" + (f": {last}" if last else ""),
        output=result.output,
        returncode=result.returncode,
    )
