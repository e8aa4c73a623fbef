"""Tell systemd which process is the unit's main process after a USR2 (Gunicorn #2856).

Gunicorn does not announce the new master after a USR2 (PR #3285 proposes it and is not merged),
so when the old master exits systemd believes the service died and stops the whole unit.
``django_zerodeploy.gunicorn_conf`` fixes that with this module: once *every* worker of a
re-executed master has reported ready, the last one to get ready sends
``MAINPID=<new master>`` and ``READY=1`` on ``NOTIFY_SOCKET``. The reload command waits for that
announcement before it retires the old master, and never before the new generation is proven:
announcing a master that then fails would make systemd stop the old one with it.

This needs ``Type=notify`` and ``NotifyAccess=all`` in the unit (the message comes from a
worker, a process of the unit that is not the main one).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one datagram to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket).
    False when there is no socket or it cannot be reached; never raises."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError:
        return False
    return True


def main_pid_message(master_pid: int, ready: int) -> str:
    """The exact announcement for a master whose ``ready`` workers all reported."""
    return (
        f"MAINPID={master_pid}\nREADY=1\n"
        f"STATUS=Gunicorn master {master_pid} ready with {ready} workers (django-zerodeploy)"
    )


def is_reexecuted_master(environ: Mapping[str, str] | None = None) -> bool:
    """In a worker: its master was started by a USR2 and has not been promoted yet (Gunicorn
    sets GUNICORN_PID in the new master's environment and drops it on promotion)."""
    return bool((os.environ if environ is None else environ).get("GUNICORN_PID"))


def announce_if_generation_ready(master_pid: int, expected: int) -> str | None:
    """Called by a worker right after it wrote its ready report. If it runs under systemd in a
    re-executed master and every worker of that master is now ready, announce the master as
    MAINPID and record it in the runtime directory. Returns the message sent, or None."""
    from . import readiness

    if not os.environ.get("NOTIFY_SOCKET") or not is_reexecuted_master():
        return None
    ready = [r for r in readiness.reports_for_master(master_pid) if r.ready]
    if len(ready) < expected:
        return None
    if not readiness.claim_announcement(master_pid):  # a sibling got there first
        return None
    message = main_pid_message(master_pid, len(ready))
    if not notify(message):
        readiness.mark_announced(master_pid, "")
        return None
    readiness.mark_announced(master_pid, message)
    return message
