"""Reaching a Gunicorn that runs as another user, through ``sudo -n`` and nothing else.

On a VPS Gunicorn often runs as ``www-data`` (``User=`` in its unit) or as root, while the
checkout, and so ``manage.py deploy``, belongs to the deploying user. That user cannot signal
the master, nor run ``systemctl reload``; the usual script does ``sudo systemctl reload
gunicorn``. Here the same is done without a password prompt (``-n``: a missing rule fails at
once instead of waiting for a password), with one fixed argument list the operator allows in
sudoers:

- the systemd strategy: ``sudo -n systemctl reload UNIT`` (as root);
- usr2 and hup: ``sudo -n -u OWNER kill -s SIGNAL -- PID``, run as the user Gunicorn runs as, so
  the rule lets the deployer signal only that user's processes.

Whether the rule exists is asked first (``sudo -n -l ARGV``, which runs nothing), so without it
nothing is signalled and one message names the line to add to sudoers.
"""

from __future__ import annotations

import os
import shutil
import signal

from .. import proc
from ..exit_codes import USAGE, CommandFailure
from ..osutil import os_user

SECURE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # where sudo itself looks (Debian's secure_path)


def is_root() -> bool:
    return os.geteuid() == 0


def needs_sudo(owner_uid: int | None) -> bool:
    """A process of ``owner_uid`` cannot be signalled by us directly."""
    return owner_uid is not None and not is_root() and owner_uid != os.geteuid()


def _binary(name: str, path: str | None = None) -> str:
    return shutil.which(name, path=path) or f"/usr/bin/{name}"


def kill_argv(user: str, sig: int, pid: int) -> list[str]:
    """The command run through sudo to send ``sig`` to ``pid`` as ``user``."""
    name = signal.Signals(sig).name.removeprefix("SIG")
    return ["-u", user, _binary("kill", SECURE_PATH), "-s", name, "--", str(pid)]


def systemctl_argv(unit: str) -> list[str]:
    """The command run through sudo to reload ``unit``: systemctl from PATH, as the rule names
    it (``sudo -n -l`` tells us if it is the one allowed)."""
    return ["-u", "root", _binary("systemctl"), "reload", unit]


def sudoers_line(argv: list[str], *, any_pid_signals: tuple[str, ...] = ()) -> str:
    """The sudoers line allowing ``argv`` (``-u USER CMD ARGS``) for this user, without a
    password. For kill, every signal the strategy sends, to any pid (``*``)."""
    user, command = argv[1], argv[2:]
    if any_pid_signals:
        kill = command[0]
        allowed = ", ".join(f"{kill} -s {sig} -- *" for sig in any_pid_signals)
    else:
        allowed = " ".join(command)
    return f"{os_user()} ALL=({user}) NOPASSWD: {allowed}"


def _sudo() -> str | None:
    return shutil.which("sudo", path=SECURE_PATH + os.pathsep + os.environ.get("PATH", ""))


def allowed(argv: list[str]) -> tuple[bool, str]:
    """(may we run ``sudo -n ARGV``?, why not). Runs nothing: ``sudo -n -l`` only lists."""
    sudo = _sudo()
    if not sudo:
        return False, "sudo is not installed"
    listed = proc.run([sudo, "-n", "-l", *argv], timeout=30)
    if listed.ok:
        return True, ""
    return False, listed.last_lines(1) or f"sudo -l exited {listed.returncode}"


def run(argv: list[str], timeout: float) -> proc.ProcResult:
    """``sudo -n ARGV``."""
    return proc.run([_sudo() or "sudo", "-n", *argv], timeout=timeout)


def missing_rule(argv: list[str], why: str, what: str, line: str) -> CommandFailure:
    """The one message for a deployer that may not run ``argv`` through sudo (exit 2)."""
    shown = "sudo -n " + " ".join(argv)
    return CommandFailure(
        f"{what}, and {os_user()} may not run `{shown}` ({why}); nothing was signalled. "
        f"Allow exactly that with `visudo -f /etc/sudoers.d/zerodeploy`, adding the line:\n"
        f"    {line}",
        USAGE,
    )
