"""Which release is actually serving: what the live workers report, not what ``HEAD`` says."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from .. import gunicorn, healthz_url
from ..conf import app_settings
from ..exit_codes import CommandFailure
from ..gunicorn import privilege
from ..gunicorn.master import master_binds, reload_blocked
from ..gunicorn.reloader import read_config, reload_plan


def project_master() -> Any:
    """The Gunicorn master of this project (raises CommandFailure when there is none)."""
    return gunicorn.find_master(
        pidfile=app_settings.GUNICORN_PIDFILE, unit=app_settings.GUNICORN_SYSTEMD_UNIT
    )


def require_reload_permission(master: Any) -> None:
    """Refuse before anything changes when this user could not reload ``master`` (Gunicorn
    of another user without the sudoers rule): CommandFailure, exit 2, with the line to add
    for the strategy the reload will run (after ``decide``'s fallback, e.g. usr2 -> hup)."""
    unit = app_settings.GUNICORN_SYSTEMD_UNIT or master.unit
    strategy = app_settings.RELOAD_STRATEGY
    # The strategy matters here only for a master this user signals through sudo, or when it
    # may become systemd (asked for, or usr2's fallback under systemd): otherwise every
    # strategy is allowed, and reading Gunicorn's configuration (a fresh interpreter, which the
    # reload does anyway) would decide nothing.
    if privilege.needs_sudo(master.uid) or strategy == "systemd" or master.under_systemd:
        config = read_config(master, float(app_settings.STEP_TIMEOUT))
        if config.ok:  # else the reload step reports why the configuration does not load
            strategy, _why, _refused = reload_plan(master, config, strategy, unit)
    failure = reload_blocked(master, strategy, unit)
    if failure:
        raise failure


def workers_serving(master: Any) -> set[str]:
    """Releases the live, ready workers of ``master`` report (empty when they report none)."""
    with contextlib.suppress(CommandFailure, OSError):
        return {r for r in gunicorn.serving_releases(master) if r}
    return set()


def healthz_release(url: str | None = None, timeout: float = 3.0) -> str | None:
    """``releaseId`` from HEALTHZ_URL (http, https or a Unix socket), or None when unset or
    unreachable. A 503 still carries the release in its body, so it is read too."""
    url = url or app_settings.HEALTHZ_URL
    return healthz_url.release_id(url, timeout=timeout) if url else None


def _path() -> str:
    """/healthz/'s path, the default when the URLconf does not say (or does not load)."""
    with contextlib.suppress(Exception):
        return healthz_url.healthz_path() or "/healthz/"
    return "/healthz/"


def bind_url(master: Any) -> str | None:
    """HEALTHZ_URL unset: /healthz/ on the first address the Gunicorn master listens on
    (``--bind``, TCP or a Unix socket), None when it cannot be read or dialled."""
    for bind in master_binds(master) if master is not None else []:
        url = healthz_url.url_for_bind(bind, _path(), cwd=str(master.cwd))
        if url:
            return url
    return None


def what_serves(master: Any, head: str | None) -> tuple[set[str], str]:
    """(releases serving, where that came from): the workers' reports, else HEALTHZ_URL, else
    ``HEAD`` (when nothing reports, e.g. before Gunicorn runs with the hooks)."""
    if master is not None:
        found = workers_serving(master)
        if found:
            return found, "workers"
    release = healthz_release()
    if release:
        return {release}, "healthz"
    return ({head} if head else set()), "HEAD"


def wait_for_release(target: str, master: Any, timeout: float = 15.0) -> tuple[bool, str]:
    """Poll until HEALTHZ_URL says ``target`` serves; without it, /healthz/ on the socket
    Gunicorn binds, and where that gives no answer, the workers' reports. Returns (ok, what was
    seen)."""
    deadline = time.monotonic() + timeout
    seen = ""
    while True:
        url, source = app_settings.HEALTHZ_URL, ""
        if not url and master is not None:
            with contextlib.suppress(CommandFailure):
                master = project_master()
            url, source = bind_url(master), " (Gunicorn's bind)"
        release = healthz_release(url, timeout=min(3.0, timeout)) if url else None
        if url and (release or app_settings.HEALTHZ_URL):
            seen = f"{url}{source} reports releaseId {release!r}"
            if release == target:
                return True, seen
        elif master is not None:
            releases = workers_serving(master)
            seen = f"workers report {sorted(releases)}"
            if releases == {target}:
                return True, seen
        else:
            return False, "neither HEALTHZ_URL nor a Gunicorn master to ask"
        if time.monotonic() >= deadline:
            return False, seen
        time.sleep(0.25)
