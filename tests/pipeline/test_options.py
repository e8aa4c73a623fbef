"""DeployOptions checked when made; DeployResult ready for JSON."""

from __future__ import annotations

import dataclasses

import pytest

from django_zerodeploy import exit_codes
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.pipeline import (
    DeployOptions,
    DeployResult,
)
from django_zerodeploy.pipeline.options import validate_options


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"ref": "--upload-pack=touch x"}, "not a valid git ref"),
        ({"ref": "-x"}, "not a valid git ref"),
        ({"rollback": "--output=x"}, "not a valid git ref"),
        ({"ref": "main", "rollback": True}, "--ref and --rollback cannot be used together."),
        ({"wait_lock": -1}, "--wait-lock must not be negative."),
    ],
)
def test_bad_options_are_usage_errors_when_made(fields, says):
    """Checked once, on creation: no entry (command, admin, task, test) can pass bad options
    to the pipeline, so the pipeline does not check them again."""
    with pytest.raises(CommandFailure) as refused:
        DeployOptions(**fields)
    assert refused.value.exit_code == exit_codes.USAGE and says in refused.value.message
    with pytest.raises(CommandFailure):  # a copy with other fields is checked too
        dataclasses.replace(DeployOptions(), **fields)


def test_good_options_pass():
    DeployOptions(ref="v1.2.3")
    DeployOptions(rollback="12")
    options = DeployOptions(rollback=True, wait_lock=5)
    validate_options(options)
    with pytest.raises(dataclasses.FrozenInstanceError):  # checked options stay checked
        options.wait_lock = -1  # type: ignore[misc]


def test_result_as_dict_is_json_ready():
    result = DeployResult(
        0, "succeeded", "Deployed", 3, "a" * 40, "b" * 40, mixed_window=1.23456, duration=2.5
    )
    data = result.as_dict()
    assert data["exit_code"] == 0 and data["deployment_id"] == 3 and data["mixed_window"] == 1.235
    assert set(data) >= {
        "exit_code",
        "status",
        "message",
        "deployment_id",
        "target_sha",
        "previous_sha",
    }
