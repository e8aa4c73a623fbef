"""The Gunicorn master: find and prove it (``finding``, ``proving``), reload it (``reloader``,
``strategies``), the workers' ready reports (``readiness``) and telling systemd about a new
master (``sdnotify``).

Light on purpose: ``gunicorn_conf`` runs inside Gunicorn's workers and imports ``readiness``
from here, so this package imports nothing until one of the names below is asked for (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .finding import find_master
    from .master import Master, serving_releases
    from .reloader import reload
    from .result import Phase, ReloadResult

_HOMES = {
    "Master": "master",
    "serving_releases": "master",
    "find_master": "finding",
    "reload": "reloader",
    "Phase": "result",
    "ReloadResult": "result",
}
__all__ = ["Master", "Phase", "ReloadResult", "find_master", "reload", "serving_releases"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value
