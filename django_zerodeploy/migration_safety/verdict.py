"""What the classification says, as plain data: the verdict on one operation and the pending
migration that carries them. No Django import: the deploy pipeline reads these back from the
``plan --json`` of the release it deploys without loading the migration machinery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SAFE = "safe"
UNSAFE = "unsafe"
UNKNOWN = "unknown"
PRE = "pre"
POST = "post"
RANK = {SAFE: 0, UNKNOWN: 1, UNSAFE: 2}

EXPAND_CONTRACT = "expand → deploy → contract"


@dataclass
class Verdict:
    """What one operation means for the release that serves while it runs."""

    operation: str  # the operation's class name, e.g. "RemoveField"
    description: str  # Django's own description, e.g. "Remove field text from note"
    classification: str  # safe | unsafe | unknown
    reason: str  # why, in terms of the serving code
    safe_sequence: str = ""  # how to reach the same schema without breaking anything

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(**{f.name: str(data.get(f.name) or "") for f in fields(cls)})


def verdict(op: Any, classification: str, reason: str, sequence: str = "") -> Verdict:
    """The verdict on ``op``, described the way Django describes it."""
    try:
        description = op.describe()
    except Exception:  # noqa: BLE001 - a custom describe() must not break the plan
        description = type(op).__name__
    return Verdict(type(op).__name__, description, classification, reason, sequence)


def always(classification: str, reason: str, sequence: str = "") -> Callable[[Any, Any], Verdict]:
    """A rule whose verdict depends on the kind of operation alone, not on its fields."""
    return lambda op, ctx: verdict(op, classification, reason, sequence)


def worst(classifications: list[str]) -> str:
    return max(classifications, key=RANK.__getitem__, default=SAFE)


@dataclass
class PendingMigration:
    """One pending migration of a release: its stage, whether its unsafe operations are
    acknowledged (and by whom), and the verdict on each operation."""

    app: str
    name: str
    stage: str = PRE  # PRE: before the reload; POST: after it (contract phase)
    acknowledged: bool = False
    operations: list[Verdict] = field(default_factory=list)
    acknowledged_by: str = ""  # "", "flag" (--allow-unsafe) or "marker"
    acknowledgement_reason: str = ""

    @property
    def label(self) -> str:
        return f"{self.app}.{self.name}"

    @property
    def classification(self) -> str:
        return worst([op.classification for op in self.operations])

    def as_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "name": self.name,
            "stage": self.stage,
            "acknowledged": self.acknowledged,
            "acknowledged_by": self.acknowledged_by,
            "acknowledgement_reason": self.acknowledgement_reason,
            "classification": self.classification,
            "operations": [op.as_dict() for op in self.operations],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingMigration:
        """Read back from ``as_dict()`` (the ``plan --json`` of another process)."""
        return cls(
            str(data.get("app", "")),
            str(data.get("name", "")),
            POST if data.get("stage") == POST else PRE,
            bool(data.get("acknowledged")),
            [Verdict.from_dict(op) for op in data.get("operations") or []],
            str(data.get("acknowledged_by") or ""),
            str(data.get("acknowledgement_reason") or ""),
        )
