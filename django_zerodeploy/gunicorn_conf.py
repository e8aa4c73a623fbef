"""Gunicorn hooks: a worker is ready only once Django, the URLconf and the smoke URLs answered.

Use it as ``gunicorn -c python:django_zerodeploy.gunicorn_conf APP``, or from your own
``gunicorn.conf.py``::

    from django_zerodeploy.gunicorn_conf import *  # noqa: F401,F403

If you define your own ``post_worker_init`` too, wrap it so ours runs first and the reload
command can see the hook is there::

    from django_zerodeploy import gunicorn_conf

    @gunicorn_conf.with_readiness
    def post_worker_init(worker):
        ...  # yours, runs after ours succeeded

What ``post_worker_init`` does, in the worker, after the WSGI app is loaded and before the first
``accept()``:

1. loads the URLconf (every included module), runs Django's system checks when its master has
   never had a ready worker (a fresh start, or the new master of a USR2), and requests each
   ``ZERODEPLOY["SMOKE_URLS"]`` path through this worker's own WSGI callable, in-process;
2. on success writes a ``WorkerReport`` (pid, master pid, release, time) in the runtime
   directory: the reload command waits for these, it never guesses readiness from a sleep;
3. on failure the worker refuses to boot. In a master that has never had a ready worker (a
   fresh start, or the new master of a USR2) it exits with code 3 (Gunicorn's
   ``WORKER_BOOT_ERROR``), which halts *that* master: after a USR2 the old master keeps
   serving and the broken generation never takes a request. In a master that has already
   served (a respawn after ``max_requests`` or a crash, or the new workers of a HUP) it exits
   with code 1, and Gunicorn retries it while the other workers keep serving: a passing glitch
   (a database hiccup during a smoke request), or new files checked out under a running master
   that a respawned worker happens to import, must not halt a serving site;
4. if the runtime directory cannot be written (a full disk, wrong permissions), the worker logs
   it and still serves when its master has served already (it halts only a master known never
   to have had a ready worker): a respawn on a full ``/tmp`` must not take a serving site down;
5. under systemd, in a master started by USR2, the last worker to get ready announces the new
   master as MAINPID (see ``django_zerodeploy.gunicorn.sdnotify``).

``pre_exec`` makes a USR2 re-exec work after ``python -m gunicorn`` (see its docstring).

Nothing here runs Django in the master: importing it there would pin the old settings into
every worker forked after a HUP (Gunicorn #2524), so Django is only imported inside the worker
hooks.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .exit_codes import CommandFailure
from .releases.reexec import follow_current

__all__ = ["post_worker_init", "pre_exec", "worker_exit"]

WORKER_BOOT_ERROR = 3  # gunicorn.arbiter.Arbiter.WORKER_BOOT_ERROR: halts the master
WORKER_RETRY = 1  # any other non-zero code: the master spawns a new worker
_STORAGE_ERRORS = (OSError, CommandFailure)  # what the runtime directory can raise


def _facts(worker: Any) -> Any:
    from .gunicorn.probe import settings_of
    from .gunicorn.readiness import MasterFacts

    settings = settings_of(worker.cfg, getattr(worker.app, "app_uri", None))
    errorlog = settings["errorlog"]
    return MasterFacts(
        pid=worker.ppid,
        executable=sys.executable,
        argv=list(sys.argv),
        cwd=os.getcwd(),
        **{**settings, "errorlog": os.path.abspath(errorlog) if errorlog else None},
        notify_socket=bool(os.environ.get("NOTIFY_SOCKET")),
        hooked=True,
        reexec_ok=reexec_ok(worker.cfg),
    )


def post_worker_init(worker: Any) -> None:
    """Prove this worker can serve, then report it ready (or refuse to boot)."""
    boot = _Boot.start(worker)
    if boot is None:
        return
    problem = readiness_problem(worker, boot.smoke_urls, boot.proven() is False)
    boot.attempt("record the master's facts", boot.record_facts)
    if problem:
        boot.refuse(problem)
    if not boot.report_ready():
        return
    worker.zerodeploy_ready = True
    boot.attempt("record that the master is proven", boot.mark_proven)
    boot.attempt("announce the master to systemd", boot.announce)


@dataclass
class _Boot:
    """One worker's boot as the readiness hook sees it, one method per step.

    The runtime directory can fail like any disk (full, unwritable, unsafe: CommandFailure).
    An exception escaping the hook exits the worker with WORKER_BOOT_ERROR, which halts the
    master: that must only happen to a master known never to have served."""

    worker: Any
    release: str
    smoke_urls: list[str]
    pid: int = field(default_factory=os.getpid)

    @classmethod
    def start(cls, worker: Any) -> _Boot | None:
        """None when this is not a Django app: the hook then reports nothing, changes nothing."""
        try:
            from django.conf import settings

            if not settings.configured:
                raise RuntimeError("Django settings are not configured")
            from .conf import app_settings
            from .gunicorn import readiness  # noqa: F401 - fails here, not in a step, if broken
            from .gunicorn.sdnotify import announce_if_generation_ready  # noqa: F401
            from .release import boot_release
        except Exception as exc:  # noqa: BLE001 - not a Django app: report nothing, change nothing
            worker.log.warning("django-zerodeploy: readiness hook inactive (%s)", exc)
            return None
        return cls(worker, boot_release(), list(app_settings.SMOKE_URLS))

    @property
    def master_pid(self) -> int:
        return self.worker.ppid

    def attempt(self, what: str, action: Callable[[], object]) -> bool:
        try:
            action()
        except _STORAGE_ERRORS as exc:
            detail = exc.message if isinstance(exc, CommandFailure) else exc
            self.worker.log.error("django-zerodeploy: cannot %s: %s", what, detail)
            return False
        return True

    def proven(self) -> bool | None:
        """Has this master had a ready worker? None when the runtime directory cannot tell."""
        from .gunicorn import readiness

        try:
            return readiness.is_proven(self.master_pid)
        except _STORAGE_ERRORS:
            return None

    def report(self, ready: bool, detail: str = "") -> None:
        from .gunicorn import readiness

        readiness.write_report(
            readiness.WorkerReport(
                self.pid, self.master_pid, self.release, time.time(), ready, detail
            )
        )

    def record_facts(self) -> None:
        from .gunicorn import readiness

        readiness.write_master_facts(_facts(self.worker))

    def refuse(self, problem: str) -> NoReturn:
        # exit 3 (halt the master) only when it is known never to have had a ready worker
        code = WORKER_BOOT_ERROR if self.proven() is False else WORKER_RETRY
        self.attempt("record the refusal", lambda: self.report(False, problem))
        self.worker.log.error(
            "django-zerodeploy: worker %s refuses to boot (exit %s): %s", self.pid, code, problem
        )
        sys.exit(code)

    def report_ready(self) -> bool:
        """Report this worker ready; False (it serves unseen) or an exit when it cannot."""
        if self.attempt("report this worker ready", lambda: self.report(True)):
            return True
        if self.proven() is False:
            # a new generation that cannot report ready cannot be told from a broken one
            self.worker.log.error(
                "django-zerodeploy: worker %s refuses to boot (exit %s): its master never had "
                "a ready worker and this one cannot report ready",
                self.pid,
                WORKER_BOOT_ERROR,
            )
            sys.exit(WORKER_BOOT_ERROR)
        self.worker.log.error(
            "django-zerodeploy: worker %s serves without a ready report (its master has served "
            "already, or the runtime directory cannot tell): a reload cannot see it until the "
            "runtime directory works again",
            self.pid,
        )
        return False

    def mark_proven(self) -> None:
        from .gunicorn import readiness

        readiness.mark_proven(self.master_pid)

    def announce(self) -> None:
        from .gunicorn.sdnotify import announce_if_generation_ready

        message = announce_if_generation_ready(self.master_pid, int(self.worker.cfg.workers))
        if message:
            self.worker.log.info("django-zerodeploy: told systemd %s", message.replace("\n", " "))


post_worker_init.zerodeploy_hook = True  # type: ignore[attr-defined]


def readiness_problem(worker: Any, smoke_urls: list[str], new_generation: bool) -> str:
    """Why this worker must not serve ("" when it may): the URLconf, Django's system checks in
    a master that never had a ready worker (a code-only release in the releases layout boots
    no preflight, so its new generation is where ``manage.py check`` runs), the smoke URLs."""
    from .preflight import check_urlconf, smoke, system_check_errors

    try:
        check_urlconf()
    except Exception as exc:  # noqa: BLE001
        worker.log.exception("django-zerodeploy: the URLconf failed to load")
        return f"the URLconf failed to load: {type(exc).__name__}: {exc}"
    if new_generation:
        try:
            errors = system_check_errors()
        except Exception as exc:  # noqa: BLE001 - a check that raises is a failed check
            worker.log.exception("django-zerodeploy: the system checks raised")
            return f"the system checks raised {type(exc).__name__}: {exc}"
        if errors:
            return "system check failed: " + "; ".join(e.rstrip(".") for e in errors[:5])
    failures = smoke(worker.wsgi, smoke_urls)
    return "smoke URL failed: " + "; ".join(failures) if failures else ""


def _started_as_module() -> bool:
    """``python -m gunicorn``: sys.argv[0] is then gunicorn's ``__main__.py``."""
    return bool(sys.argv) and os.path.basename(sys.argv[0]) == "__main__.py"


def reexec_ok(cfg: Any) -> bool:
    """Will a USR2 re-exec of this master start? Not when it was started with ``python -m
    gunicorn`` unless ``pre_exec`` below is configured (Gunicorn #3281)."""
    hook = cfg.pre_exec
    ours = getattr(hook, "zerodeploy_hook", False)
    return bool(ours) or not _started_as_module()


def pre_exec(server: Any) -> None:
    """Runs in the master's fork right before a USR2 re-exec. Gunicorn re-executes
    ``sys.executable + sys.argv``; after ``python -m gunicorn`` that runs gunicorn's
    ``__main__.py`` as a script, which puts gunicorn's own package directory first on sys.path,
    where its ``http`` package hides the standard library's: Django then fails to import and
    the new master halts (Gunicorn #3281; PR #3285 proposes ``sys.orig_argv``, unmerged). Re-exec
    the command line the master was really started with instead. In the releases layout, the
    re-exec runs from the release ``ROOT/current`` names now (``releases.reexec``; Gunicorn
    #394, #1898)."""
    original = getattr(sys, "orig_argv", None)
    if original and _started_as_module() and "-m" in original:
        server.START_CTX["args"] = [sys.executable, *original[1:]]
    # the releases layout: run the new master from the release ROOT/current names now
    release = follow_current(server.START_CTX, server.cfg.env_orig)
    if release:
        server.log.info("re-executing from release %s", release)


pre_exec.zerodeploy_hook = True  # type: ignore[attr-defined]


def worker_exit(server: Any, worker: Any) -> None:
    """Drop this worker's ready report (refusals stay, for the reload command to explain)."""
    if not getattr(worker, "zerodeploy_ready", False):
        return
    try:
        from .gunicorn.readiness import remove_report

        remove_report(os.getpid())
    except Exception:  # noqa: BLE001,S110 - exiting anyway; readers prune dead pids
        pass


def with_readiness(hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap your own ``post_worker_init`` so ours runs first."""

    def post_worker_init_with_readiness(worker: Any) -> Any:
        post_worker_init(worker)
        return hook(worker)

    post_worker_init_with_readiness.zerodeploy_hook = True  # type: ignore[attr-defined]
    return post_worker_init_with_readiness
