"""The Gunicorn master: find and prove it (``master``), reload it (``reload``, ``strategies``),
and tell systemd about a new one (``sdnotify``)."""

from .master import Master, find_master, serving_releases
from .reload import reload
from .result import Phase, ReloadResult

__all__ = ["Master", "Phase", "ReloadResult", "find_master", "reload", "serving_releases"]
