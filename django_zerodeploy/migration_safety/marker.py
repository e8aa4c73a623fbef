"""What a migration says about itself: ``zerodeploy = {"stage": "post", "allow_unsafe": ...}``.

Read from the migration object only (no Django import), so the health check can ask whether
an unapplied migration is a post-deploy one without loading the classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .verdict import POST, PRE

MARKER = "zerodeploy"
MARKER_KEYS = {"stage", "allow_unsafe"}


class PlanError(Exception):
    """The plan cannot be built (bad marker, inconsistent history): a configuration error."""


@dataclass
class Marker:
    """What a migration says about itself: ``zerodeploy = {"stage": "post", "allow_unsafe": True}``."""

    stage: str = PRE
    allow_unsafe: bool = False
    reason: str = ""  # allow_unsafe may be a string: why it is fine, kept in the record


def read_marker(migration: Any) -> Marker:
    """The ``zerodeploy`` marker of a migration; django-syzygy's ``stage = Stage.POST_DEPLOY``
    and django-safemigrate's ``safe = Safe.after_deploy`` also mean post-deploy."""
    label = f"{migration.app_label}.{migration.name}"
    value = getattr(migration, MARKER, None)
    marker = Marker()
    if value is None:
        marker.stage = POST if _foreign_post_marker(migration) else PRE
        return marker
    if not isinstance(value, dict):
        raise PlanError(
            f"{label}: {MARKER} must be a dict such as {{'stage': 'post'}}, not {type(value).__name__}."
        )
    unknown = set(value) - MARKER_KEYS
    if unknown:
        raise PlanError(
            f"{label}: unknown {MARKER} key(s) {', '.join(sorted(map(str, unknown)))}; allowed: stage, allow_unsafe."
        )
    stage = value.get("stage", PRE)
    if stage not in (PRE, POST):
        raise PlanError(f"{label}: {MARKER}['stage'] must be 'pre' or 'post', not {stage!r}.")
    allow = value.get("allow_unsafe", False)
    if not isinstance(allow, (bool, str)) or allow == "":
        raise PlanError(
            f"{label}: {MARKER}['allow_unsafe'] must be True/False or a non-empty reason string."
        )
    marker.stage = stage
    marker.allow_unsafe = bool(allow)
    marker.reason = allow if isinstance(allow, str) else ""
    return marker


def _foreign_post_marker(migration: Any) -> bool:
    for attr, word in (("stage", "post_deploy"), ("safe", "after_deploy")):
        value = getattr(migration, attr, None)
        if value is None:
            continue
        for candidate in (getattr(value, "value", None), getattr(value, "safe", None), value):
            if (
                candidate is not None
                and word in str(getattr(candidate, "value", candidate)).lower()
            ):
                return True
    return False
