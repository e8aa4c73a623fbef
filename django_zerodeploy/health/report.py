"""Results of one round of checks, and their JSON in the IETF "Health Check Response Format
for HTTP APIs" draft (draft-inadarei-api-health-check, ``application/health+json``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .api import Status

CONTENT_TYPE = "application/health+json"


@dataclass
class CheckResult:
    """One check's reading. ``output`` and ``error`` are for authorized callers and logs only."""

    key: str
    name: str
    component_id: str | None
    component_type: str | None
    critical: bool
    status: Status
    value: Any = None
    unit: str | None = None
    output: str = ""
    time: datetime | None = None
    duration: float = 0.0
    monotonic: float = 0.0
    error: BaseException | None = field(default=None, repr=False)

    @property
    def blocks_traffic(self) -> bool:
        return self.status == "fail" and self.critical

    def as_draft(self) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        if self.component_id:
            entry["componentId"] = self.component_id
        if self.component_type:
            entry["componentType"] = self.component_type
        if self.value is not None:
            entry["observedValue"] = self.value
        if self.unit:
            entry["observedUnit"] = self.unit
        entry["status"] = self.status
        entry["critical"] = self.critical
        if self.time is not None:
            entry["time"] = self.time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self.output and self.status != "pass":
            entry["output"] = self.output
        return entry


@dataclass
class HealthReport:
    """A round of results; ``status`` is fail if a critical check fails, warn if anything else
    is not passing, else pass."""

    results: list[CheckResult]
    release_id: str
    version: str | None
    created: float
    error: str = ""  # the checks could not even be built (configuration)
    _rendered: dict[bool, bytes] = field(default_factory=dict, repr=False)

    @property
    def status(self) -> Status:
        if self.error or any(r.blocks_traffic for r in self.results):
            return "fail"
        if any(r.status != "pass" for r in self.results):
            return "warn"
        return "pass"

    @property
    def http_status(self) -> int:
        return 503 if self.status == "fail" else 200

    @property
    def draining(self) -> bool:
        return any(r.name == "drain:draining" and r.status == "fail" for r in self.results)

    @property
    def failing(self) -> list[CheckResult]:
        return [r for r in self.results if r.status != "pass"]

    def as_dict(self, details: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status}
        if self.version:
            body["version"] = self.version
        body["releaseId"] = self.release_id
        if not details:
            return body
        if self.error:
            body["output"] = self.error
        if self.draining:
            body["notes"] = ["draining"]
        checks: dict[str, list[dict[str, Any]]] = {}
        for result in self.results:
            checks.setdefault(result.name, []).append(result.as_draft())
        body["checks"] = checks
        body["pid"] = os.getpid()
        return body

    def render(self, details: bool) -> bytes:
        """The JSON body, encoded once per report and audience (probes reuse it)."""
        cached = self._rendered.get(details)
        if cached is None:
            cached = json.dumps(self.as_dict(details), separators=(",", ":")).encode()
            self._rendered[details] = cached
        return cached


def report_table(report: HealthReport) -> str:
    """The report for a terminal: one line per check, failing ones with their message."""
    lines = [
        f"status: {report.status}  release: {report.release_id or '(unknown)'}"
        + (f"  version: {report.version}" if report.version else "")
    ]
    if report.error:
        lines.append(f"  error: {report.error}")
    width = max((len(r.key) for r in report.results), default=10)
    for r in report.results:
        value = "" if r.value is None else f"{r.value}{' ' + r.unit if r.unit else ''}"
        flag = "" if r.critical else " (non-critical)"
        line = f"  {r.status:<4}  {r.key:<{width}}  {value}{flag}"
        if r.output and r.status != "pass":
            line += f"  {r.output}"
        lines.append(line.rstrip())
    return "\n".join(lines)
