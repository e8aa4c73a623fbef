"""Read Gunicorn's configuration exactly as a master's command line would, in a fresh process.

``probe_config()`` starts a Python that runs ``main()`` here with the argv as JSON; it runs in the master's working
directory, with its interpreter and environment, and lets Gunicorn's own parser read the command
line, ``GUNICORN_CMD_ARGS`` and the config file of the *checked-out* code: what a USR2 re-exec
or a HUP will use. Nothing is started and the application is not imported.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import proc

_MARK = "ZERODEPLOY-GUNICORN-CONFIG "
HOOK_MODULE = "django_zerodeploy.gunicorn_conf"


@dataclass(kw_only=True)
class GunicornSettings:
    """What a reload needs of Gunicorn's configuration, one field set however it is read: by
    the probe of the checked-out code (``GunicornConfig``) or by the running master's workers
    (``readiness.MasterFacts``)."""

    wsgi_app: str | None = None
    daemon: bool = False
    preload: bool = False
    workers: int = 1
    pidfile: str | None = None
    graceful_timeout: float = 30.0
    errorlog: str | None = None
    bind: list[str] = field(default_factory=list)


def settings_of(cfg: Any, wsgi_app: str | None) -> dict[str, Any]:
    """The ``GunicornSettings`` fields of Gunicorn's ``cfg`` (errorlog None: stderr)."""
    errorlog = cfg.errorlog if cfg.errorlog and cfg.errorlog != "-" else None
    return {
        "wsgi_app": wsgi_app,
        "daemon": bool(cfg.daemon),
        "preload": bool(cfg.preload_app),
        "workers": int(cfg.workers),
        "pidfile": cfg.pidfile,
        "graceful_timeout": float(cfg.graceful_timeout),
        "errorlog": errorlog,
        "bind": list(cfg.bind or []),
    }


@dataclass
class GunicornConfig(GunicornSettings):
    """The checked-out configuration: what the next generation will use."""

    ok: bool
    error: str = ""
    chdir: str | None = None
    pythonpath: str | None = None
    hooked: bool = False
    pre_exec_hooked: bool = False


def gunicorn_args(cmdline: list[str]) -> list[str] | None:
    """The arguments after ``gunicorn`` in a master's command line; None when the command line
    is not one (setproctitle rewrites it to ``gunicorn: master [...]``)."""
    for index, part in enumerate(cmdline[:4]):
        path = Path(part)
        module = index > 0 and cmdline[index - 1] == "-m" and part == "gunicorn"
        script = path.name == "gunicorn" or (
            path.name == "__main__.py" and path.parent.name == "gunicorn"  # a USR2 re-exec
        )
        if module or script:
            return cmdline[index + 1 :]
    return None


def option(cmdline: list[str], *names: str) -> str | None:
    """The value of the first of ``names`` in ``cmdline`` (``-p FILE``, ``--pid=FILE``), or None."""
    for index, part in enumerate(cmdline):
        for name in names:
            if part == name and index + 1 < len(cmdline):
                return cmdline[index + 1]
            if name.startswith("--") and part.startswith(name + "="):
                return part.split("=", 1)[1]
    return None


def gunicorn_chdirs(cmdline: list[str]) -> list[str]:
    """The ``--chdir`` of a master's command line, as a list of none or one."""
    value = option(gunicorn_args(cmdline) or [], "--chdir")
    return [value] if value else []


def started_as_module(cmdline: list[str]) -> bool:
    """``python -m gunicorn ...`` (what a USR2 re-exec breaks without our pre_exec hook)."""
    return any(
        a == "-m" and b == "gunicorn" for a, b in zip(cmdline[:3], cmdline[1:4], strict=False)
    )


def probe_config(
    python: str, args: list[str], cwd: Path, env: Mapping[str, str], timeout: float = 60
) -> GunicornConfig:
    """Gunicorn's configuration for ``args``, read by ``python`` in ``cwd``."""
    from ..preflight import child_env, niced

    child = child_env(Path(cwd), env)
    # -c, not -m: the package imports this module, and runpy would warn about running it twice
    code = "import sys; from django_zerodeploy.gunicorn.probe import main; sys.exit(main(sys.argv[1:]))"
    ran = proc.run(
        niced([python, "-c", code, json.dumps(args)]), cwd=cwd, env=child, timeout=timeout
    )
    if _MARK in ran.stdout:
        try:
            data = json.loads(ran.stdout.split(_MARK, 1)[1].splitlines()[0])
            return GunicornConfig(**data)
        except (ValueError, TypeError):
            pass
    lines = [ln for ln in ran.output.strip().splitlines() if ln.strip()]
    why = lines[-1].strip() if lines else f"exit {ran.returncode}"
    if ran.timed_out:
        why = f"timed out after {timeout:g} s"
    return GunicornConfig(ok=False, error=f"Gunicorn's configuration does not load: {why}")


def _child(args: list[str]) -> dict[str, Any]:
    from gunicorn.app.wsgiapp import WSGIApplication

    sys.argv = ["gunicorn", *args]
    app = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog="gunicorn")
    cfg = app.cfg
    hook = cfg.post_worker_init
    hooked = getattr(hook, "__module__", "") == HOOK_MODULE or bool(
        getattr(hook, "zerodeploy_hook", False)
    )
    return {
        "ok": True,
        **settings_of(cfg, app.app_uri),
        "chdir": cfg.chdir,
        "pythonpath": cfg.pythonpath,
        "hooked": hooked,
        "pre_exec_hooked": bool(getattr(cfg.pre_exec, "zerodeploy_hook", False)),
    }


def main(argv: list[str]) -> int:
    result = _child(json.loads(argv[0]))
    sys.stdout.write("\n" + _MARK + json.dumps(result) + "\n")
    return 0
