"""ReloadResult.seconds_until: where the pipeline reads the mixed window from a reload's phases."""

from __future__ import annotations

from django_zerodeploy.gunicorn.result import (
    NEW_GENERATION_READY,
    NEW_MASTER,
    OLD_RETIRED,
    PROMOTED,
    SIGNAL,
    Phase,
    ReloadResult,
)


def _result(*phases: tuple[str, float], duration: float = 9.0) -> ReloadResult:
    return ReloadResult(
        True, 0, "usr2", "ok", phases=[Phase(n, s) for n, s in phases], duration=duration
    )


def test_seconds_until_a_phase_starts_and_ends() -> None:
    result = _result(
        (SIGNAL, 0.5),
        (NEW_MASTER, 0.25),
        (NEW_GENERATION_READY, 2.0),
        (OLD_RETIRED, 0.75),
        (PROMOTED, 0.5),
    )
    assert result.seconds_until(OLD_RETIRED) == 2.75
    assert result.seconds_until(OLD_RETIRED, through=True) == 3.5
    assert result.seconds_until(SIGNAL) == 0.0


def test_a_phase_never_reached_counts_the_whole_reload() -> None:
    result = _result((SIGNAL, 0.5), (NEW_MASTER, 0.25), duration=4.0)
    assert result.seconds_until(OLD_RETIRED) == 4.0
    assert result.seconds_until(OLD_RETIRED, through=True) == 4.0
