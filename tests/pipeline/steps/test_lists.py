"""The step lists, read top to bottom, and EXTRA_STEPS placed in them (never over a built-in step)."""

from __future__ import annotations

import pytest

from django_zerodeploy import exit_codes
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.pipeline.steps import (
    STEP_NAMES,
    default_steps,
    release_steps,
    rollback_steps,
)
from django_zerodeploy.pipeline.steps.base import innocent_step_names
from django_zerodeploy.pipeline.steps.extra import ExtraStep
from django_zerodeploy.pipeline.steps.preconditions import RecoverInterruptedStep
from django_zerodeploy.pipeline.steps.source import OpenRecordStep


def test_steps_read_top_to_bottom_in_the_documented_order():
    names = tuple(s.name for s in default_steps(extra=[]) if s.recorded)
    # the lock comes first, so that a second deploy is told "locked" (exit 4), never confused
    # by the first one's checkout or its two Gunicorn masters during the reload
    assert names == STEP_NAMES
    assert set(names) == set(STEP_NAMES)


def test_extra_steps_go_after_their_anchor_in_settings_order():
    extra = [
        {
            "name": "compilemessages",
            "after": "install",
            "command": ["python", "manage.py", "compilemessages"],
        },
        {"name": "npm", "after": "migrate", "command": ["npm", "run", "build"]},
        {"name": "second", "after": "install", "command": ["true"]},
    ]
    names = [s.name for s in default_steps(extra=extra)]
    assert names[names.index("install") + 1 : names.index("install") + 3] == [
        "compilemessages",
        "second",
    ]
    assert names[names.index("migrate") + 1] == "npm"
    assert names.index("npm") < names.index("smoke")
    # static files are collected before the preflight renders {% static %}
    assert names.index("install") < names.index("collectstatic") < names.index("preflight")
    assert isinstance(default_steps(extra=extra)[names.index("npm")], ExtraStep)


@pytest.mark.parametrize("name", ["checkout", "reload", "twice"])
def test_an_extra_step_never_replaces_a_built_in_one(name):
    """Named like a built-in step, an extra step would take over its undo: a failed deploy
    would report "Rolled back" while the new code serves. Refused before anything runs."""
    extra = [{"name": name, "after": "install", "command": ["true"]}]
    if name == "twice":
        extra.append({"name": name, "after": "smoke", "command": ["true"]})
    with pytest.raises(CommandFailure) as info:
        default_steps(extra=extra)
    assert info.value.exit_code == exit_codes.USAGE and "EXTRA_STEPS" in info.value.message


# -- the step contract: what the runner, the records and the dry run read from the steps ------
def _undo_order(steps: list) -> list[str]:
    undone = [s for s in steps if s.undo_rank is not None]
    return [s.name for s in sorted(undone, key=lambda s: s.undo_rank)]


def test_the_undo_order_comes_from_the_steps():
    # code first (the others read it), then packages, static files, and last the workers
    assert _undo_order(default_steps(extra=[])) == [
        "checkout",
        "install",
        "collectstatic",
        "reload",
    ]
    assert _undo_order(release_steps(extra=[])) == ["switch", "collectstatic", "reload"]
    assert _undo_order(rollback_steps()) == ["switch", "reload"]
    for steps in (default_steps(extra=[]), release_steps(extra=[]), rollback_steps()):
        assert all(s.changes_live for s in steps if s.undo_rank is not None)


def test_the_steps_before_the_release_do_not_blame_it():
    assert {"lock", "environment", "fetch", "prepare"} <= innocent_step_names()
    assert not {"install", "preflight", "migrate", "build", "venv"} & innocent_step_names()
    # the unrecorded steps write no row: an extra step may take their names and still blame
    assert innocent_step_names() == {"lock", "environment", "fetch", "prepare"}


def test_recovery_and_the_record_are_steps_without_a_row():
    for steps in (default_steps(extra=[]), release_steps(extra=[]), rollback_steps()):
        hidden = [type(s) for s in steps if not s.recorded]
        assert hidden == [RecoverInterruptedStep, OpenRecordStep]
        names = [s.name for s in steps]
        decides = next(i for i, s in enumerate(steps) if s.decides_target)
        assert names[decides + 1] == OpenRecordStep.name  # the record opens on the target
        assert names.index(RecoverInterruptedStep.name) == names.index("environment") + 1


def test_an_extra_step_after_the_fetch_runs_once_the_record_is_open():
    extra = [{"name": "notify", "after": "fetch", "command": ["true"]}]
    steps = default_steps(extra=extra)
    names = [s.name for s in steps]
    assert names.index("notify") == names.index(OpenRecordStep.name) + 1
