"""A deploy's steps as bars on one time axis, for the admin's detail page (plain HTML/CSS):
each bar starts where its step started and is as long as it took, in percent of the deploy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

MIN_WIDTH = 0.4  # percent: a step of a few milliseconds still shows as a mark


@dataclass(frozen=True)
class Bar:
    name: str
    status: str
    seconds: float
    offset: float  # percent of the deploy's span
    width: float  # percent

    @property
    def style(self) -> str:
        return f"margin-left:{self.offset:.2f}%;width:{self.width:.2f}%"


def step_bars(steps: Iterable[Any]) -> list[Bar]:
    """Bars for the steps that ran (a started_at and a duration), in the order they ran."""
    timed = [s for s in steps if s.started_at is not None and s.duration is not None]
    if not timed:
        return []
    start = min(s.started_at for s in timed)
    end = max(s.started_at + timedelta(seconds=s.duration) for s in timed)
    span = max((end - start).total_seconds(), 1e-6)
    bars = []
    for step in sorted(timed, key=lambda s: (s.started_at, s.position)):
        offset = (step.started_at - start).total_seconds() / span * 100
        width = max(step.duration / span * 100, MIN_WIDTH)
        bars.append(Bar(step.name, step.status, step.duration, offset, min(width, 100 - offset)))
    return bars
