"""``reload()``: find and prove the master, preflight the checked-out code, reload, verify.

One reload at a time per project (an ``flock`` in the runtime directory): a second one waits
for the first to finish, then reloads the master the first one left; it never sends a second
USR2 while a first new generation is booting. Expected failures come back as a ``ReloadResult``
with an exit code, never as an exception:

- 0: reloaded, the new release serves;
- 1: refused or aborted, nothing changed for clients: the old release still serves;
- 2: bad usage or configuration (nothing was signalled);
- 3: the site is down, or may be, and needs a person.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import release as release_mod
from ..conf import RELOAD_STRATEGIES, app_settings
from ..exit_codes import DOWN, FAILED, USAGE, CommandFailure
from ..git import read_head_without_git
from ..osutil import flock_within
from ..preflight import preflight
from . import result as phases
from . import systemd
from .finding import find_master
from .master import Master
from .probe import GunicornConfig, probe_config
from .result import PhaseRecorder, ReloadResult
from .strategies import RUNNERS
from .strategies.choice import decide
from .strategies.context import HOOKLESS_NOTE, ReloadContext

logger = logging.getLogger("django_zerodeploy.reload")
LOCK_EXTRA_WAIT = 60.0  # beyond --timeout: a reload in progress may still retire its old master


@contextlib.contextmanager
def reload_lock(wait: float, recorder: PhaseRecorder) -> Iterator[None]:
    """Hold ``<runtime_dir>/reload.lock``; wait up to ``wait`` seconds for another reload."""
    path = app_settings.runtime_dir / "reload.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise _lock_failure(path, exc) from exc
    try:
        waited: list[bool] = []
        try:
            taken = flock_within(fd, wait, on_wait=lambda: waited.append(True))
        except OSError as exc:
            raise _lock_failure(path, exc) from exc
        if not taken:
            raise CommandFailure(
                f"Another reload ({_holder(path)}) is still running after {wait:g} s; this one "
                "was refused and nothing was signalled.",
                FAILED,
            )
        if waited:
            recorder.phase(phases.LOCK, "waited for another reload to finish")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            fcntl.flock(fd, fcntl.LOCK_UN)
            raise _lock_failure(path, exc) from exc
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # the pid left behind is only informative
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock_failure(path: Path, exc: OSError) -> CommandFailure:
    return CommandFailure(
        f"Cannot use the reload lock {path}: {exc.strerror or exc}; nothing was signalled. "
        "Check free space and permissions of the runtime directory (ZERODEPLOY['RUNTIME_DIR']).",
        USAGE,
    )


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(path.read_text().strip())}"
    return "pid unknown"


def expected_release() -> str:
    """The release the checkout holds now (what new workers will report), '' if unknown. In
    the releases layout: the release ROOT/current names (this process runs from the old one)."""
    root = app_settings.releases_root
    if root is not None:
        return read_head_without_git(Path(os.path.realpath(root.current_link))) or ""
    try:
        return release_mod.boot_release.__wrapped__()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - only used to double-check the new workers
        return ""


def _resolve_unit(unit: str | None, master: Master | None = None) -> str | None:
    unit = unit or app_settings.GUNICORN_SYSTEMD_UNIT
    if not unit and master is not None and master.under_systemd:
        unit = systemd.unit_of(master.pid)
    return unit


def reload_plan(
    master: Master, config: GunicornConfig, strategy: str | None = None, unit: str | None = None
) -> tuple[str, str, tuple[int, str] | None]:
    """What a reload of ``master`` would do, decided as ``reload()`` decides it (``decide``:
    the strategy after any fallback, why, the refusal), signalling nothing. The deploy's
    environment step and ``deploy --check`` ask this, so they name the strategy that runs."""
    strategy = strategy or app_settings.RELOAD_STRATEGY
    ctx = ReloadContext(
        master,
        config,
        float(app_settings.RELOAD_TIMEOUT),
        "",
        _resolve_unit(unit, master),
        PhaseRecorder(),
        strategy=strategy,
        hooked=config.hooked,
    )
    return decide(strategy, ctx)


def read_config(master: Master, timeout: float) -> GunicornConfig:
    args = master.args
    if args is None:
        return GunicornConfig(
            ok=False,
            error=f"cannot read Gunicorn's arguments from master {master.pid}'s command line "
            "(setproctitle?) and its workers have not reported them: start it with the "
            "django_zerodeploy.gunicorn_conf hooks",
        )
    return probe_config(master.python, args, master.cwd, master.child_environ, timeout=timeout)


def gunicorn_app_spec(spec: str | None) -> str | None:
    """``module:callable`` as Gunicorn reads it: ``gunicorn myproject.wsgi`` serves the
    module's ``application`` (gunicorn ``util.import_app``)."""
    if spec and ":" not in spec:
        return f"{spec}:application"
    return spec


def _preflight_phase(
    master: Master, config: GunicornConfig, timeout: float, run_app: bool, recorder: PhaseRecorder
) -> ReloadResult | None:
    """Gunicorn's config and (unless skipped) the app, in fresh interpreters like the master's."""
    if not config.ok:
        recorder.phase(phases.PREFLIGHT, "failed: " + config.error)
        return ReloadResult(
            False, FAILED, "", f"Preflight failed, nothing was signalled: {config.error}."
        )
    if not run_app:
        recorder.phase(
            phases.PREFLIGHT, "Gunicorn config loads; app checks skipped (run_preflight=False)"
        )
        return None
    env = master.child_environ
    if config.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([config.pythonpath, env.get("PYTHONPATH", "")]).strip(
            os.pathsep
        )
    code_dir = Path(config.chdir) if config.chdir else master.cwd
    result = preflight(
        code_dir,
        python=master.python,
        env=env,
        wsgi_app=gunicorn_app_spec(config.wsgi_app or master.wsgi_app),
        smoke_urls=list(app_settings.SMOKE_URLS),
        timeout=timeout,
    )
    if not result.ok:
        recorder.phase(phases.PREFLIGHT, f"failed at {result.step}: {result.message}")
        return ReloadResult(
            False,
            FAILED,
            "",
            f"Preflight failed at {result.step}, nothing was signalled and the old release still serves: {result.message}",
            output=result.output,
        )
    recorder.phase(phases.PREFLIGHT, f"Gunicorn config, {result.message}")
    return None


def reload(
    *,
    strategy: str | None = None,
    pidfile: str | Path | None = None,
    unit: str | None = None,
    timeout: float | None = None,
    echo: Callable[[str], None] | None = None,
    run_preflight: bool = True,
) -> ReloadResult:
    """Reload the Gunicorn master of this project with new code, without dropping a request."""
    recorder = PhaseRecorder(echo)
    strategy = strategy or app_settings.RELOAD_STRATEGY
    result = _reload(recorder, strategy, pidfile, unit, timeout, run_preflight)
    result.strategy = result.strategy or strategy  # the one that ran, after a fallback
    result.phases = recorder.phases
    result.duration = recorder.elapsed
    if not result.ok:
        logger.warning("reload_gunicorn: %s", result.message)
    return result


def _reload(
    recorder: PhaseRecorder,
    strategy: str,
    pidfile: str | Path | None,
    unit: str | None,
    timeout: float | None,
    run_preflight: bool,
) -> ReloadResult:
    seconds, refused = _checked_args(strategy, timeout)
    if refused is not None:
        return refused
    found = _Found(strategy)
    try:
        with reload_lock(seconds + LOCK_EXTRA_WAIT, recorder):
            found.master = find_master(pidfile=pidfile, unit=unit)
            return _reload_master(found.master, found, recorder, unit, seconds, run_preflight)
    except CommandFailure as exc:
        return _command_failure(exc, found.master, found.strategy)
    except Exception as exc:  # noqa: BLE001 - a bug must not leave the caller without an answer
        logger.exception("reload_gunicorn failed unexpectedly")
        return _unexpected(exc, found.master, found.strategy)


@dataclass
class _Found:
    """The strategy as decided and the master once found, for the answer to a failure."""

    strategy: str
    master: Master | None = None


def _checked_args(strategy: str, timeout: float | None) -> tuple[float, ReloadResult | None]:
    if strategy not in RELOAD_STRATEGIES:
        message = f"Unknown strategy {strategy!r}: use one of {', '.join(RELOAD_STRATEGIES)}."
        return 0.0, ReloadResult(False, USAGE, strategy, message)
    try:
        seconds = float(timeout if timeout is not None else app_settings.RELOAD_TIMEOUT)
    except (TypeError, ValueError):
        seconds = -1
    if seconds <= 0:
        message = f"--timeout must be a positive number of seconds, not {timeout!r}."
        return seconds, ReloadResult(False, USAGE, strategy, message)
    return seconds, None


def _reload_master(
    master: Master,
    found: _Found,
    recorder: PhaseRecorder,
    unit: str | None,
    seconds: float,
    run_preflight: bool,
) -> ReloadResult:
    """Probe, preflight, decide the strategy (kept in ``found``) and run it."""
    strategy = found.strategy
    recorder.phase(phases.FOUND_MASTER, master.describe())
    # Importing the app takes its boot time, whatever --timeout allows the new generation.
    step_timeout = float(app_settings.STEP_TIMEOUT)
    config = read_config(master, step_timeout)
    stop = _preflight_phase(master, config, step_timeout, run_preflight, recorder)
    if stop is not None:
        stop.old_master_pid = master.pid
        return stop
    ctx = ReloadContext(
        master,
        config,
        seconds,
        expected_release(),
        _resolve_unit(unit, master),
        recorder,
        strategy=strategy,
        hooked=config.hooked,
    )
    if not config.hooked:
        recorder.phase(phases.READINESS, HOOKLESS_NOTE)
    strategy, why, refused = decide(strategy, ctx)
    found.strategy = strategy
    if why:
        ctx.strategy = strategy
        recorder.phase(phases.STRATEGY, why)
    if refused:
        code, message = refused
        recorder.phase(phases.REFUSED, message)
        return ReloadResult(False, code, strategy, message, old_master_pid=master.pid)
    return RUNNERS[strategy](ctx)


def _command_failure(exc: CommandFailure, master: Master | None, strategy: str) -> ReloadResult:
    message, code = exc.message, exc.exit_code
    if master is not None and master.signalled:
        # After a signal, "bad usage, nothing changed" (2) is no longer true: only a failure
        # that says the old release still serves (1) keeps its code.
        code = FAILED if exc.exit_code == FAILED else DOWN
        if code == DOWN:
            message += " This came after the master was signalled: check the site."
    return ReloadResult(
        False, code, strategy, message, old_master_pid=master.pid if master else None
    )


def _unexpected(exc: Exception, master: Master | None, strategy: str) -> ReloadResult:
    signalled = master is not None and master.signalled
    code = DOWN if signalled else FAILED
    state = "the site may be affected: check it" if signalled else "nothing was signalled"
    return ReloadResult(
        False,
        code,
        strategy,
        f"Unexpected error ({type(exc).__name__}: {exc}); {state}.",
        old_master_pid=master.pid if master else None,
    )
