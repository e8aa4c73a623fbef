"""What systemd knows about the unit that runs Gunicorn, through ``systemctl`` only.

Gunicorn under systemd has one trap: the unit's MainPID is the first master, and when it exits
after a USR2 systemd stops the whole unit, new master included (Gunicorn #2856). So a master
running under systemd is detected (``is_under_systemd``) and never gets a bare USR2.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from .. import proc
from ..exit_codes import USAGE, CommandFailure
from . import privilege

_UNIT = re.compile(r"^[A-Za-z0-9:_.@\\-]+$")


def validate_unit(unit: str) -> str:
    if not unit or unit.startswith("-") or not _UNIT.match(unit):
        raise CommandFailure(f"{unit!r} is not a systemd unit name.", USAGE)
    return unit


def systemctl(*args: str, timeout: float = 60) -> proc.ProcResult:
    return proc.run(["systemctl", *args], timeout=timeout)


def _show(unit: str, prop: str) -> str:
    result = systemctl("show", "-p", prop, "--value", validate_unit(unit), timeout=30)
    if not result.ok:
        raise CommandFailure(
            f"`systemctl show -p {prop} --value {unit}` failed: "
            f"{result.last_lines(2) or result.returncode}.",
            USAGE,
        )
    return result.stdout.strip()


def properties(unit: str, names: tuple[str, ...]) -> dict[str, str]:
    """Several properties in one ``systemctl show`` (``Name=value`` lines)."""
    args = ["show", *[f"--property={name}" for name in names], validate_unit(unit)]
    result = systemctl(*args, timeout=30)
    if not result.ok:
        raise CommandFailure(
            f"`systemctl show {unit}` failed: {result.last_lines(2) or result.returncode}.", USAGE
        )
    return parse_show(result.stdout)


def parse_show(text: str) -> dict[str, str]:
    """``systemctl show`` output as a dict."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {name: value.strip() for name, value in pairs}


def main_pid(unit: str) -> int:
    """The unit's MainPID (0 when it is not running)."""
    value = _show(unit, "MainPID")
    try:
        return int(value or 0)
    except ValueError:
        raise CommandFailure(f"systemctl reported MainPID {value!r} for {unit}.", USAGE) from None


def notify_access(unit: str) -> str:
    """NotifyAccess= of the unit: none, main, exec or all."""
    return _show(unit, "NotifyAccess")


def reload_unit(unit: str, timeout: float) -> proc.ProcResult:
    """``systemctl reload UNIT``: runs the unit's ExecReload (HUP to $MAINPID). Not as root it
    is ``sudo -n systemctl reload UNIT`` (the seed of every VPS guide's deploy script)."""
    if privilege.is_root():
        return systemctl("reload", validate_unit(unit), timeout=timeout)
    return privilege.run(privilege.systemctl_argv(validate_unit(unit)), timeout=timeout)


def cannot_reload(unit: str) -> CommandFailure | None:
    """Why this user cannot reload ``unit`` (None: root, or sudoers allows exactly
    ``systemctl reload UNIT``). Runs nothing."""
    if privilege.is_root():
        return None
    argv = privilege.systemctl_argv(validate_unit(unit))
    ok, why = privilege.allowed(argv)
    if ok:
        return None
    return privilege.missing_rule(
        argv, why, f"Reloading {unit} needs root", privilege.sudoers_line(argv)
    )


def unit_of(pid: int) -> str | None:
    """The ``*.service`` a process belongs to, from its cgroup (None outside systemd)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        path = line.split(":", 2)[-1]
        last = path.rstrip("/").rsplit("/", 1)[-1]
        if last.endswith(".service") and not last.startswith("user@"):
            return last
    return None


def is_under_systemd(pid: int, ppid: int, environ: Mapping[str, str]) -> bool:
    """systemd started this process: it set INVOCATION_ID (or NOTIFY_SOCKET) in its
    environment, or the process hangs off pid 1 inside a service's cgroup."""
    if environ.get("INVOCATION_ID") or environ.get("NOTIFY_SOCKET"):
        return True
    return ppid == 1 and unit_of(pid) is not None
