"""The runner: secrets redacted on every path out (the echo, the result)."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from django_zerodeploy.pipeline import DeployOptions
from django_zerodeploy.pipeline.context import DeployContext, Outcome, StepFailed
from django_zerodeploy.pipeline.records import StepResult
from django_zerodeploy.pipeline.runner import Runner, format_line
from django_zerodeploy.pipeline.steps.base import Step

SECRET_URL = "https://deployer:s3cr3t-token@git.example.com/site.git"


# -- redaction on every path out ------------------------------------------------------------------
class _Says(Step):
    name = "says"

    def run(self, ctx: DeployContext) -> Outcome:
        return Outcome(f"fetched {SECRET_URL}", f"output {SECRET_URL}")


class _Fails(Step):
    name = "fails"

    def run(self, ctx: DeployContext) -> Outcome:
        raise StepFailed(f"cannot push to {SECRET_URL}")


class _Crashes(Step):
    name = "crashes"

    def run(self, ctx: DeployContext) -> Outcome:
        raise RuntimeError(f"boom at {SECRET_URL}")


@pytest.mark.django_db
@pytest.mark.parametrize("last", [_Fails, _Crashes])
def test_step_details_are_redacted_in_the_echo_and_the_result(runtime, last):
    lines: list[str] = []
    with override_settings(ZERODEPLOY={"RUNTIME_DIR": str(runtime)}):
        result = Runner(DeployOptions(), None, lines.append, steps=[_Says(), last()]).run()
    text = "\n".join(lines) + json.dumps(result.as_dict())
    assert "s3cr3t-token" not in text
    assert "https://***@git.example.com" in "\n".join(lines)
    assert [s["name"] for s in result.steps] == ["says", last.name]
    assert all("s3cr3t" not in s["detail"] for s in result.steps)
    assert "***@git.example.com" in result.steps[0]["detail"]


def test_step_line_has_name_status_and_time():
    line = format_line(StepResult("preflight", "ok", "check, WSGI import", 1.234))
    assert line.split()[:4] == ["preflight", "ok", "1.23", "s"]


def test_failed_step_line_leaves_the_message_to_the_closing_line():
    """The refusal is printed once: by the deploy's closing message, not also by its step."""
    line = format_line(StepResult("environment", "failed", "Tracked files are modified", 0.04))
    assert line.split() == ["environment", "failed", "0.04", "s"]
