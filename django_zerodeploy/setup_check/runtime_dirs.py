"""The runtime directory as each process of the site sees it: this command, the master and
every worker must share one, or readiness reports never reach the deploy."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import psutil

from .. import proc
from ..conf import app_settings
from ..exit_codes import CommandFailure
from ..runtime import default_runtime_dir, suggested_runtime_dir
from .findings import Finding

_MARK = "ZERODEPLOY-SETUP "


def site_settings(master: Any) -> dict[str, str]:
    """RUNTIME_DIR and the repository as the site's own settings give them in the master's
    environment (a ``.env`` or environment variables may differ from this shell's)."""
    from ..preflight import child_env

    env = child_env(master.cwd, master.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", os.environ.get("DJANGO_SETTINGS_MODULE", ""))
    code = "from django_zerodeploy.setup_check.runtime_dirs import child_main; child_main()"
    ran = proc.run([master.python, "-c", code], cwd=master.cwd, env=env, timeout=60)
    if _MARK in ran.stdout:
        with contextlib.suppress(ValueError):
            return json.loads(ran.stdout.split(_MARK, 1)[1].splitlines()[0])
    return {}


def child_main() -> None:
    from django.conf import settings

    configured = (getattr(settings, "ZERODEPLOY", None) or {}).get("RUNTIME_DIR")
    # the default directory is named after the deploy root: ROOT in the releases layout
    data = {"configured": str(configured or ""), "deploy_root": str(app_settings.deploy_root)}
    print(_MARK + json.dumps(data))  # noqa: T201


def process_runtime_dirs(master: Any) -> dict[int, Path]:
    """The runtime directory of the master and each worker: the one their settings configure
    (read in the master's environment), or the default for that process's user (workers may
    switch user: Gunicorn's ``user`` setting)."""
    seen = site_settings(master)
    configured = seen.get("configured") if seen else str(app_settings.RUNTIME_DIR or "")
    deploy_root = Path(seen.get("deploy_root") or app_settings.deploy_root)
    found: dict[int, Path] = {}
    for process in [master.process(), *master.workers()]:
        if process is None:
            continue
        with contextlib.suppress(psutil.Error):
            uid = process.uids().effective
            found[process.pid] = (
                Path(configured) if configured else default_runtime_dir(deploy_root, uid)
            )
    return found


def same_directory(pid: int, theirs: Path, ours: Path) -> bool:
    """Does process ``pid`` see ``theirs`` as the directory this process calls ``ours``?
    Through /proc/PID/root, so a private /tmp (systemd PrivateTmp=) counts as different."""
    if theirs != ours:
        return False
    try:
        there = os.stat(f"/proc/{pid}/root{theirs}")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # not ours to look into: the names agree, which is all that can be seen
    here = os.stat(ours)
    return (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino)


def check_runtime_dir(master: Any) -> Finding:
    try:
        ours = app_settings.runtime_dir
    except CommandFailure as exc:
        return Finding("runtime directory", False, exc.message, runtime_fix())
    dirs = process_runtime_dirs(master)
    apart = {pid: d for pid, d in dirs.items() if not same_directory(pid, d, ours)}
    if not apart:
        return Finding(
            "runtime directory",
            True,
            f"{ours}, the same for this command, master {master.pid} and its "
            f"{len(dirs) - 1} worker(s)",
        )
    shown = ", ".join(f"pid {pid}: {d}" for pid, d in sorted(apart.items()))
    return Finding(
        "runtime directory",
        False,
        f"this command uses {ours}, but Gunicorn's processes see another one ({shown}; a "
        "different user, other settings in their environment, or a private /tmp): readiness reports "
        "would never reach the deploy",
        runtime_fix(),
    )


def runtime_fix() -> str:
    unit = app_settings.GUNICORN_SYSTEMD_UNIT or "gunicorn.service"
    suggested = suggested_runtime_dir(unit.removesuffix(".service"))
    return (
        f'ZERODEPLOY["RUNTIME_DIR"] = "{suggested}"  '
        "# in settings.py: one directory for every process of the site"
    )
