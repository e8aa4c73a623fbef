"""What ``deploy --check`` reports: one Finding per piece of the setup, gathered in a
SetupReport that gives the text, the JSON and the exit code."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .. import exit_codes


@dataclass
class Finding:
    """One piece of the setup: in place (``ok``) or missing, with the line that adds it.
    A missing piece that is not ``required`` is reported but does not fail the check."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def lines(self) -> list[str]:
        mark = "ok  " if self.ok else ("MISS" if self.required else "warn")
        out = [f"[{mark}] {self.name}: {self.detail}"]
        if self.fix and not self.ok:
            out.append(f"       fix: {self.fix}")
        return out


@dataclass
class SetupReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok or not f.required for f in self.findings)

    @property
    def exit_code(self) -> int:
        return exit_codes.OK if self.ok else exit_codes.USAGE

    @property
    def missing(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def as_text(self) -> str:
        lines = [line for f in self.findings for line in f.lines()]
        required = [f for f in self.missing if f.required]
        lines.append(
            "A deploy would work."
            if self.ok
            else f"{len(required)} required piece(s) missing: a deploy would not work."
        )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings]}
