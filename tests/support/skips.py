"""A pytest plugin: under CI (``CI=true``) a skipped or xfailed test fails the run unless the
allow-list file names it, with the reason it may skip. A skip that nobody decided to accept
would otherwise turn a missing server or tool into a green run.

The allow-list (ini option ``skips_allowed``, relative to the rootdir) has one entry a line:
a test node id, shell-style wildcards allowed, then whitespace and the reason. ``#`` starts a
comment. An entry without a reason is an error: the file exists to say why.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

INI = "skips_allowed"


@dataclass(frozen=True)
class Allowed:
    pattern: str
    reason: str


@dataclass(frozen=True)
class Skip:
    nodeid: str
    kind: str  # "skipped" or "xfail"
    reason: str


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def read_allow_list(path: Path) -> list[Allowed]:
    """The entries of ``path`` (none when it does not exist); ValueError names a bad line."""
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        pattern, _, reason = text.partition(" ")
        if not reason.strip():
            raise ValueError(f"{path.name}:{number}: {pattern!r} has no reason")
        entries.append(Allowed(pattern, reason.strip()))
    return entries


def skip_of(report: pytest.CollectReport | pytest.TestReport) -> Skip | None:
    """The skip or xfail a report records, or None."""
    if getattr(report, "wasxfail", None) is not None:
        return Skip(report.nodeid, "xfail", str(report.wasxfail) or "xfail")
    if not report.skipped:
        return None
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return Skip(report.nodeid, "skipped", reason.removeprefix("Skipped: "))


class SkipGuard:
    """Collects every skip of the session; at its end, under CI, fails it on unlisted ones."""

    def __init__(self, config: pytest.Config) -> None:
        self.path = Path(config.rootpath) / config.getini(INI)
        self.skips: list[Skip] = []
        self.unlisted: list[Skip] = []
        self.error = ""

    def record(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        skip = skip_of(report)
        if skip:
            self.skips.append(skip)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.record(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not on_ci():
            return
        try:
            allowed = read_allow_list(self.path)
        except ValueError as exc:
            self.error = str(exc)
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        self.unlisted = [
            s
            for s in self.skips
            if not any(fnmatch.fnmatchcase(s.nodeid, a.pattern) for a in allowed)
        ]
        passed = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.unlisted and session.exitstatus in passed:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:  # noqa: ANN001
        if self.error:
            terminalreporter.section("skip allow-list", red=True)
            terminalreporter.line(f"the skip allow-list is invalid: {self.error}")
        if self.unlisted:
            terminalreporter.section("skips not allowed under CI", red=True)
            for skip in self.unlisted:
                terminalreporter.line(f"{skip.kind}: {skip.nodeid}: {skip.reason}")
            terminalreporter.line(
                f"CI fails on these: fix the cause, or list them with their reason in {self.path.name}"
            )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI, "the file listing the skips accepted under CI", default="skips_allowed.txt")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipGuard(config), "zerodeploy-skip-guard")
