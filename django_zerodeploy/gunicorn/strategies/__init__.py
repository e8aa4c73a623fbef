"""The three ways to load new code into a running Gunicorn, each with its own checks.

``usr2``: a new master next to the old one; the old one is retired only once every worker of
the new generation is ready, and a new generation that fails is stopped while the old one
keeps serving. ``hup`` and ``systemd`` (``systemctl reload``, whose ExecReload sends HUP) reload
in place: Gunicorn stops the old workers as soon as the new ones are forked, so they depend on
the preflight, and the verification can only tell whether the site came back.

"Ready" is what the workers of a Gunicorn running our hook report (URLconf and smoke URLs
passed, and the release each runs). Without the hook it is observed from outside: the worker
entered Gunicorn's request loop (``heartbeat``), after the preflight passed; the release that
serves is then read from ``HEALTHZ_URL`` once only the new workers remain.

``choice`` decides which one runs (or refuses), ``usr2`` and ``in_place`` run them, sharing
``generation`` (watch and check the new workers), ``stopping`` and ``context``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..result import ReloadResult
from .context import ReloadContext
from .in_place import run_hup, run_systemd
from .usr2 import run_usr2

RUNNERS: dict[str, Callable[[ReloadContext], ReloadResult]] = {
    "usr2": run_usr2,
    "hup": run_hup,
    "systemd": run_systemd,
}
