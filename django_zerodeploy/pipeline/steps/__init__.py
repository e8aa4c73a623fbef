"""The deploy, as lists of steps read top to bottom: ``default_steps()`` in place,
``release_steps()`` and ``rollback_steps()`` in the releases layout.

Each step says whether it needs to run and why (the same answer feeds ``--dry-run``), does its
work, and, when it changes something live, knows how to undo it (``base.Step``: the contract).
The families, in the order a deploy meets them:

    preconditions     the lock, the environment, interrupted deploys recovered
    source            the target fetched, the record opened, a worktree of it
    release           packages, static files, preflight, smoke (in the worktree)
    live_tree         the checkout of the live tree, the migrations
    serving           the reload and its verification
    extra             EXTRA_STEPS
    releases_build    the releases layout: a release built beside the live one
    releases_live     ... switched to, checked, pruned
    releases_rollback ... and ``deploy --rollback`` to a kept release
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ... import exit_codes
from ...conf import app_settings
from ...exit_codes import CommandFailure
from ..project import current_layout
from .base import Step
from .extra import ExtraStep
from .live_tree import CheckoutStep, MigrateStep, PostDeployMigrateStep
from .preconditions import EnvironmentStep, LockStep, RecoverInterruptedStep
from .release import CollectStaticStep, InstallStep, PreflightStep, SmokeStep
from .releases_build import (
    BuildStep,
    CompileStep,
    ReleaseCollectStaticStep,
    ReleasePreflightStep,
    ReleaseSmokeStep,
    VenvStep,
)
from .releases_live import PruneStep, ServedFromStep, SwitchStep
from .releases_rollback import RollbackTargetStep
from .serving import ReloadStep, VerifyStep
from .source import FetchStep, OpenRecordStep, PrepareStep

if TYPE_CHECKING:
    from ..options import DeployOptions


def default_steps(extra: list[dict[str, Any]] | None = None) -> list[Step]:
    """The pipeline, top to bottom, with EXTRA_STEPS placed after the step they name."""
    return with_extra_steps(_in_place_steps(), extra)


def _in_place_steps() -> list[Step]:
    return [
        *_before_any_change(FetchStep()),
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


def release_steps(extra: list[dict[str, Any]] | None = None) -> list[Step]:
    """The releases layout's pipeline, top to bottom."""
    steps: list[Step] = [
        *_before_any_change(FetchStep()),
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
        *_before_any_change(RollbackTargetStep()),
        SwitchStep(record=False),
        ReloadStep(),
        VerifyStep(),
        ServedFromStep(),
    ]


def _before_any_change(target: Step) -> list[Step]:
    """Every pipeline's start: the lock, the environment, interrupted deploys recovered, the
    target decided, and the record opened on it."""
    return [LockStep(), EnvironmentStep(), RecoverInterruptedStep(), target, OpenRecordStep()]


def layout_steps(options: DeployOptions) -> list[Step]:
    """The steps for the layout this project runs in (and for a rollback in it)."""
    if not current_layout().is_releases:
        return default_steps()
    return rollback_steps() if options.rollback else release_steps()


# the steps an extra step may follow (and whose names it must not take): the recorded ones
STEP_NAMES = tuple(step.name for step in _in_place_steps() if step.recorded)


def with_extra_steps(steps: list[Step], extra: list[dict[str, Any]] | None = None) -> list[Step]:
    """``steps`` with EXTRA_STEPS (or ``extra``) placed after the step each names."""
    extra = app_settings.EXTRA_STEPS if extra is None else extra
    problem = extra_steps_problem(extra)
    if problem:  # the system check says it first; a queued task must not run it either
        raise CommandFailure(f"ZERODEPLOY['EXTRA_STEPS']: {problem}", exit_codes.USAGE)
    for item in extra:
        names = [s.name for s in steps]
        anchor = item["after"]
        # after the anchor, the unrecorded steps that go with it (the record opened after the
        # fetch) and the extra steps already placed after it, in settings order
        index = names.index(anchor) + 1 if anchor in names else len(steps)
        while index < len(steps) and (
            not steps[index].recorded
            or (isinstance(steps[index], ExtraStep) and steps[index].after == anchor)
        ):
            index += 1
        steps.insert(index, ExtraStep(item["name"], anchor, item["command"]))
    return steps


def extra_steps_problem(value: Any) -> str | None:
    """Why EXTRA_STEPS cannot be used, or None (the system check and the pipeline ask)."""
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, dict) or not {"name", "after", "command"} <= set(item):
            return "each extra step is a dict with 'name', 'after' and 'command'."
        name = item["name"]
        if not isinstance(name, str) or not name.strip():
            return f"step {name!r}: 'name' must be a non-empty string."
        if name in STEP_NAMES:  # it would take over that step's record and undo
            return f"step {name!r}: {name!r} is a built-in step; give the extra step its own name."
        if name in seen:
            return f"step {name!r}: {name!r} is named twice; each extra step needs its own name."
        seen.add(name)
        command = item["command"]
        if isinstance(command, str) or not isinstance(command, list | tuple):
            return (
                f"step {item.get('name')!r}: 'command' must be a list of strings "
                "(an argument list, never a shell string)."
            )
        if not command or not all(isinstance(a, str) for a in command):
            return f"step {item.get('name')!r}: 'command' must be a non-empty list of strings."
        if item["after"] not in STEP_NAMES:
            return f"step {item['name']!r}: 'after' must be one of {', '.join(STEP_NAMES)}."
    return None
