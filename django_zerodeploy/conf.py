"""The one place that reads ``settings.ZERODEPLOY``.

Every key has a documented default here (``KEYS``); ``checks.py`` validates the dict through
Django's system check framework so a bad value is an ``Error`` with an id, never a traceback at
use. Values are read on each access, so ``override_settings`` works in tests.

``KEYS`` is also the source of the configuration table in docs/configuration.md:
``python -m django_zerodeploy.conf --write docs/configuration.md`` regenerates it, and a test
fails when the page and ``KEYS`` disagree.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from .healthz_url import problem as healthz_problem
from .releases.layout import ReleasesRoot, root_of
from .runtime import runtime_dir

RELOAD_STRATEGIES = ("usr2", "hup", "systemd")


@dataclass(frozen=True)
class Key:
    """One setting: its default, the types it accepts and what it means."""

    default: Any
    types: tuple[type, ...]
    doc: str
    choices: tuple[Any, ...] = ()


_NONE = type(None)
_PATH = (str, os.PathLike, _NONE)

# fmt: off
KEYS: dict[str, Key] = {
    "REPO_DIR": Key(None, _PATH, "Git checkout to deploy. Default: the git top level of settings.BASE_DIR."),
    "REMOTE": Key("origin", (str,), "Git remote to fetch from."),
    "BRANCH": Key(None, (str, _NONE), "Branch to deploy. Default: the upstream of the checked-out branch."),
    "REQUIREMENTS": Key("requirements.txt", (str, list, tuple), "Requirements file(s), relative to REPO_DIR."),
    "SHARED_PATHS": Key([], (list, tuple), "Paths (relative to REPO_DIR) of live state to link into the release's worktree, besides what git ignores and the SQLite, MEDIA_ROOT and STATIC_ROOT paths inside the checkout."),
    "SHARED_PATHS_EXCLUDE": Key([], (list, tuple), "Paths (relative to REPO_DIR) never linked into the release's worktree, e.g. a git-ignored build directory the release makes itself."),
    "GUNICORN_PIDFILE": Key(None, _PATH, "Gunicorn master pidfile. Default: found with psutil."),
    "GUNICORN_SYSTEMD_UNIT": Key(None, (str, _NONE), "systemd unit that runs Gunicorn (MainPID is the master)."),
    "RELOAD_STRATEGY": Key("usr2", (str,), "How to reload Gunicorn: usr2, hup or systemd.", RELOAD_STRATEGIES),
    "RELOAD_TIMEOUT": Key(60, (int, float), "Seconds to wait for a new generation of workers to be ready."),
    "HEALTHZ_URL": Key(None, (str, _NONE), "This host's /healthz/, polled to verify the release after a reload: 'http://127.0.0.1:8000/healthz/', or through a Unix socket 'unix:/run/gunicorn.sock:/healthz/'. Default: the address Gunicorn binds. The host registry's heartbeat reads the served release from it (unset: the checkout's commit, marked)."),
    "SMOKE_URLS": Key([], (list, tuple), "Paths requested in-process before a release takes traffic; any 5xx refuses it."),
    "RUNTIME_DIR": Key(None, _PATH, "Where locks, readiness reports and drain flags live: one directory every process of the site sees, outside the repository, of this user and not writable by others. Default: /tmp/django-zerodeploy-UID/<digest of REPO_DIR> (never $XDG_RUNTIME_DIR or $TMPDIR)."),
    "RELEASE_ID": Key(None, (str, _NONE), "Release id to report when there is no .git (else a REVISION file, else git)."),
    "VERSION": Key(None, (str, _NONE), "Human version reported by /healthz/."),
    "EXTRA_STEPS": Key([], (list, tuple), "Extra commands: dicts {'name', 'after', 'command': [argv...]}."),
    "MIN_FREE_DISK_MB": Key(200, (int,), "Refuse to deploy with less free disk than this in REPO_DIR."),
    "STEP_TIMEOUT": Key(900, (int, float), "Seconds any one subprocess step may take."),
    "KEEP_OUTPUT_BYTES": Key(65536, (int,), "Tail of each step's output kept in the record."),
    "NOTIFY_ADMINS": Key(False, (bool,), "mail_admins() when a deploy fails."),
    "HEALTHZ_TOKEN": Key(None, (str, _NONE), "Bearer token that unlocks check details on /healthz/."),
    "HEALTHZ_PUBLIC_DETAILS": Key(False, (bool,), "Show check details to anonymous callers (not recommended)."),
    "HEALTHZ_CACHE_SECONDS": Key(1.0, (int, float), "Per-process cache of health results."),
    "HEALTHZ_CHECK_TIMEOUT": Key(2.0, (int, float), "Default timeout for each health check."),
    "HEALTH_CHECKS": Key(None, (list, tuple, _NONE), "Health checks to run. Default: the shipped ones."),
    "HEALTHZ_DISK_WARN_PERCENT": Key(90, (int, float), "Disk usage that makes the disk check warn."),
    "HEALTHZ_MEMORY_WARN_PERCENT": Key(90, (int, float), "Memory usage that makes the memory check warn."),
    "WEBHOOK_SECRET": Key(None, (str, _NONE), "Enables the deploy webhook; shared secret for signatures."),
    "WEBHOOK_PATH": Key("zerodeploy/webhook/", (str,), "Path of the webhook (under the include)."),
    "WEBHOOK_MAX_BYTES": Key(1_000_000, (int,), "Largest webhook body accepted."),
    "WEBHOOK_PROVIDERS": Key([], (list, tuple), "Forges whose deliveries the webhook accepts: any of 'github', 'gitlab', 'gitea', 'forgejo'. Default: none (every delivery refused until you choose)."),
    "WEBHOOK_KEEP_DAYS": Key(90, (int,), "Days a received delivery is remembered to refuse its replay; then its row is deleted."),
    "Q_CLUSTER_NAME": Key(None, (str, _NONE), "django-q2 cluster that runs this host's deploys (routing). Default: 'deploy-<HOST>' when HOST is set, else none (one cluster takes every deploy)."),
    "HOST": Key(None, (str, _NONE), "This host's name in the host registry and rollouts (letters, digits, '.', '_', '-'). Default: socket.gethostname(). Setting it also routes this host's deploys to the cluster 'deploy-<HOST>'."),
    "LB_CHECK_INTERVAL": Key(2.0, (int, float), "Seconds between the load balancer's health checks (HAProxy 'inter'); used for DRAIN_SECONDS and the wait after a host resumes."),
    "LB_FALL": Key(3, (int,), "Failed checks before the load balancer takes a server out (HAProxy 'fall')."),
    "LB_RISE": Key(2, (int,), "Passed checks before the load balancer takes a server back (HAProxy 'rise')."),
    "DRAIN_SECONDS": Key(None, (int, float, _NONE), "Seconds a rollout waits after draining a host before reloading it. Default: LB_CHECK_INTERVAL x LB_FALL + HEALTHZ_CACHE_SECONDS + 1."),
    "ROLLOUT_HOST_TIMEOUT": Key(15, (int, float), "Seconds a host's cluster has to answer a rollout's ping, drain or resume task."),
    "MIGRATION_LOCK_TIMEOUT": Key("5s", (str, int), "PostgreSQL lock_timeout for the migrate step."),
    "MIGRATION_STATEMENT_TIMEOUT": Key(0, (str, int), "PostgreSQL statement_timeout for the migrate step (0: none)."),
    "MIGRATION_RETRIES": Key(3, (int,), "Attempts of a migrate step that hit the lock timeout."),
    "LAYOUT": Key(None, (str, _NONE), "Deploy layout: 'releases' (ROOT/releases/, ROOT/current) or 'in_place' (one checkout moved with git). Default: detected from where the project runs.", ("releases", "in_place", None)),
    "KEEP_RELEASES": Key(5, (int,), "Releases kept in the releases layout (the current and the previous one always are); the rest, and the venvs no kept release uses, are removed."),
}
# fmt: on

# Every id the settings check can report, with what it means (documented in configuration.md).
CHECK_IDS: dict[str, str] = {
    "zerodeploy.E001": "ZERODEPLOY is not a dict.",
    "zerodeploy.E002": "Unknown key (a typo, usually: the hint names the closest key).",
    "zerodeploy.E003": "A value of the wrong type.",
    "zerodeploy.E004": "A value that is not one of the allowed choices (RELOAD_STRATEGY).",
    "zerodeploy.E005": "A value of the right type that cannot work (a pidfile path that is a "
    "directory, a negative timeout, a shell string as an extra step, ...).",
    "zerodeploy.W001": "RELOAD_STRATEGY is 'systemd' but GUNICORN_SYSTEMD_UNIT is not set.",
    "zerodeploy.W002": "The processes of this site could use different runtime directories: "
    "this one has a private /tmp (systemd PrivateTmp=yes) or RUNTIME_DIR is inside a login "
    "session's directory ($XDG_RUNTIME_DIR, $TMPDIR, /run/user).",
    "zerodeploy.W003": "WEBHOOK_SECRET is set but no WEBHOOK_PROVIDERS: every delivery is refused.",
    "zerodeploy.W004": "WEBHOOK_SECRET or HEALTHZ_TOKEN is shorter than 32 bytes.",
}


class AppSettings:
    """Attribute access to ZERODEPLOY with defaults: ``app_settings.REMOTE``."""

    def __getattr__(self, name: str) -> Any:
        if name not in KEYS:
            raise AttributeError(name)
        user = getattr(settings, "ZERODEPLOY", None) or {}
        if name in user:
            return user[name]
        default = KEYS[name].default
        return list(default) if isinstance(default, list) else default

    @property
    def repo_dir(self) -> Path:
        """REPO_DIR, or the git top level above settings.BASE_DIR (no subprocess)."""
        configured = self.REPO_DIR
        if configured:
            return Path(configured).resolve()
        base = Path(getattr(settings, "BASE_DIR", os.getcwd())).resolve()
        for candidate in (base, *base.parents):
            if (candidate / ".git").exists():
                return candidate
        return base

    @property
    def host(self) -> str:
        """This host's name: HOST, or the machine's host name."""
        return self.HOST or socket.gethostname()

    @property
    def cluster_name(self) -> str | None:
        """The django-q2 cluster this host's deploys go to: Q_CLUSTER_NAME, else
        'deploy-<HOST>' when HOST is set, else None (no routing)."""
        return self.Q_CLUSTER_NAME or (f"deploy-{self.HOST}" if self.HOST else None)

    @property
    def drain_seconds(self) -> float:
        """DRAIN_SECONDS, or how long the load balancer needs to notice a 503: every check
        interval times the failures it waits for, plus the health cache and a second."""
        if self.DRAIN_SECONDS is not None:
            return float(self.DRAIN_SECONDS)
        interval = float(self.LB_CHECK_INTERVAL)
        return interval * int(self.LB_FALL) + float(self.HEALTHZ_CACHE_SECONDS) + 1.0

    @property
    def rise_seconds(self) -> float:
        """How long the load balancer needs to take a resumed host back."""
        return float(self.LB_CHECK_INTERVAL) * int(self.LB_RISE) + float(self.HEALTHZ_CACHE_SECONDS)

    @property
    def requirements(self) -> list[str]:
        value = self.REQUIREMENTS
        return [value] if isinstance(value, str) else list(value)

    @property
    def releases_root(self) -> ReleasesRoot | None:
        """ROOT when the project runs from a release of the releases layout, else None."""
        return root_of(self.repo_dir) if self.LAYOUT != "in_place" else None

    @property
    def deploy_root(self) -> Path:
        """What host-local state is keyed on: ROOT in the releases layout (every release shares
        one lock and one readiness directory), else the checkout."""
        root = self.releases_root
        return root.path if root is not None else self.repo_dir

    @property
    def runtime_dir(self) -> Path:
        """Host-local state (locks, readiness reports, the drain flag): see runtime.py."""
        return runtime_dir(self.RUNTIME_DIR, self.deploy_root)


app_settings = AppSettings()

Problem = tuple[str, str, str, str]


ValueCheck = Callable[[Any], str | None]


def validate(
    user: Any, more_checks: dict[str, tuple[ValueCheck, ...]] | None = None
) -> list[Problem]:
    """Problems with a ZERODEPLOY value as (level, id, message, hint); used by the system check.
    ``more_checks``: value checks that live with what they check (EXTRA_STEPS, by the pipeline,
    which knows its steps), run like this module's own."""
    if user is None:
        return []
    if not isinstance(user, dict):
        return [
            (
                "error",
                "zerodeploy.E001",
                f"ZERODEPLOY must be a dict, not {type(user).__name__}.",
                "Set ZERODEPLOY = {...} in settings; see the configuration table in the docs.",
            )
        ]
    problems: list[Problem] = []
    for name in user:
        if name not in KEYS:
            close = difflib.get_close_matches(str(name).upper(), KEYS, n=1, cutoff=0.6)
            hint = (
                f"Did you mean {close[0]!r}?"
                if close
                else "See the configuration table in the docs."
            )
            problems.append(("error", "zerodeploy.E002", f"Unknown ZERODEPLOY key {name!r}.", hint))
    for name, key in KEYS.items():
        if name in user:
            checks = (*_VALUE_CHECKS.get(name, ()), *(more_checks or {}).get(name, ()))
            problems.extend(_check_value(name, key, user[name], checks))
    problems.extend(_webhook_warnings(user))
    strategy = user.get("RELOAD_STRATEGY")
    if strategy == "systemd" and not user.get("GUNICORN_SYSTEMD_UNIT"):
        problems.append(
            (
                "warning",
                "zerodeploy.W001",
                "RELOAD_STRATEGY is 'systemd' but GUNICORN_SYSTEMD_UNIT is not set.",
                "Name the unit that runs Gunicorn, e.g. 'GUNICORN_SYSTEMD_UNIT': 'gunicorn.service'.",
            )
        )
    return problems


MIN_SECRET_BYTES = 32


def _webhook_warnings(user: dict[str, Any]) -> list[Problem]:
    """A webhook that refuses everything; secrets short enough to guess."""
    found: list[Problem] = []
    if user.get("WEBHOOK_SECRET") and not user.get("WEBHOOK_PROVIDERS"):
        found.append(
            (
                "warning",
                "zerodeploy.W003",
                "WEBHOOK_SECRET is set but WEBHOOK_PROVIDERS is empty: the webhook refuses "
                "every delivery.",
                "Name the forge that sends pushes, e.g. 'WEBHOOK_PROVIDERS': ['github'].",
            )
        )
    for name in ("WEBHOOK_SECRET", "HEALTHZ_TOKEN"):
        value = user.get(name)
        if isinstance(value, str) and value and len(value.encode()) < MIN_SECRET_BYTES:
            found.append(
                (
                    "warning",
                    "zerodeploy.W004",
                    f"{name} is {len(value.encode())} bytes long; use at least {MIN_SECRET_BYTES}.",
                    'Generate one: python -c "import secrets; print(secrets.token_urlsafe(32))"',
                )
            )
    return found


def _check_value(
    name: str, key: Key, value: Any, value_checks: tuple[ValueCheck, ...]
) -> list[Problem]:
    # bool is an int subclass: True must not pass for a number of seconds.
    if isinstance(value, bool) and bool not in key.types:
        ok = False
    else:
        ok = isinstance(value, key.types)
    if not ok:
        return [
            (
                "error",
                "zerodeploy.E003",
                f"ZERODEPLOY[{name!r}] must be {type_names(key)}, not {type(value).__name__}.",
                f"{name}: {key.doc}",
            )
        ]
    if key.choices and value not in key.choices:
        allowed = ", ".join(map(str, key.choices))
        return [
            (
                "error",
                "zerodeploy.E004",
                f"ZERODEPLOY[{name!r}] is {value!r}; it must be one of {allowed}.",
                f"{name}: {key.doc}",
            )
        ]
    problems: list[Problem] = []
    for check in value_checks:
        message = check(value)
        if message:
            problems.append(
                (
                    "error",
                    "zerodeploy.E005",
                    f"ZERODEPLOY[{name!r}]: {message}",
                    f"{name}: {key.doc}",
                )
            )
    return problems


def type_names(key: Key) -> str:
    """The accepted types in words: 'str, path or None'."""
    names = []
    for t in key.types:
        name = "None" if t is _NONE else "path" if t is os.PathLike else t.__name__
        names.append(name)
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _pidfile_ok(value: Any) -> str | None:
    if value and Path(value).is_dir():
        return f"{value} is a directory; give the path of Gunicorn's pidfile (gunicorn --pid PATH)."
    return None


def _dir_ok(value: Any) -> str | None:
    if value and Path(value).exists() and not Path(value).is_dir():
        return f"{value} exists and is not a directory."
    return None


def _existing_dir(value: Any) -> str | None:
    if value and not Path(value).is_dir():
        return f"{value} is not an existing directory."
    return None


def _not_negative(value: Any) -> str | None:
    return None if value is None or value >= 0 else f"{value!r} must not be negative."


def _positive(value: Any) -> str | None:
    return None if value is None or value > 0 else f"{value!r} must be greater than 0."


def _url_ok(value: Any) -> str | None:
    found = healthz_problem(value) if value else None
    return f"{found}." if found else None


def _smoke_ok(value: Any) -> str | None:
    bad = [u for u in value if not isinstance(u, str) or not u.startswith("/")]
    return f"paths must be strings starting with '/', got {bad!r}." if bad else None


WEBHOOK_PROVIDER_NAMES = ("github", "gitlab", "gitea", "forgejo")


def _providers_ok(value: Any) -> str | None:
    bad = [v for v in value if v not in WEBHOOK_PROVIDER_NAMES]
    if bad:
        return f"unknown provider(s) {bad!r}; choose from {', '.join(WEBHOOK_PROVIDER_NAMES)}."
    return None


HOST_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _host_ok(value: Any) -> str | None:
    if value is not None and not HOST_NAME_RE.fullmatch(value):
        return f"{value!r} is not a host name (letters, digits, '.', '_', '-'; at most 100)."
    return None


def _requirements_ok(value: Any) -> str | None:
    """Each item a path relative to REPO_DIR that stays inside it."""
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if (
            not isinstance(item, str)
            or not item.strip("/.")
            or Path(item).is_absolute()
            or ".." in Path(item).parts
        ):
            return f"{item!r} must be a path relative to REPO_DIR, inside it."
    return None


_VALUE_CHECKS: dict[str, tuple[ValueCheck, ...]] = {
    "GUNICORN_PIDFILE": (_pidfile_ok,),
    "RUNTIME_DIR": (_dir_ok,),
    "REPO_DIR": (_existing_dir,),
    "RELOAD_TIMEOUT": (_positive,),
    "STEP_TIMEOUT": (_positive,),
    "KEEP_OUTPUT_BYTES": (_positive,),
    "MIN_FREE_DISK_MB": (_not_negative,),
    "HEALTHZ_CACHE_SECONDS": (_not_negative,),
    "HEALTHZ_CHECK_TIMEOUT": (_positive,),
    "WEBHOOK_MAX_BYTES": (_positive,),
    "WEBHOOK_KEEP_DAYS": (_positive,),
    "WEBHOOK_PROVIDERS": (_providers_ok,),
    "MIGRATION_RETRIES": (_positive,),
    "KEEP_RELEASES": (_positive,),
    "HOST": (_host_ok,),
    "LB_CHECK_INTERVAL": (_positive,),
    "LB_FALL": (_positive,),
    "LB_RISE": (_positive,),
    "DRAIN_SECONDS": (_not_negative,),
    "ROLLOUT_HOST_TIMEOUT": (_positive,),
    "HEALTHZ_URL": (_url_ok,),
    "SMOKE_URLS": (_smoke_ok,),
    "REQUIREMENTS": (_requirements_ok,),
    "SHARED_PATHS": (_requirements_ok,),
    "SHARED_PATHS_EXCLUDE": (_requirements_ok,),
}


# -- documentation --------------------------------------------------------------------------
TABLE_START = "<!-- settings table: generated from django_zerodeploy.conf.KEYS -->"
TABLE_END = "<!-- end of settings table -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The configuration table (every key, default, types, meaning) and the check ids."""
    lines = ["| Key | Default | Type | What it does |", "|---|---|---|---|"]
    for name, key in KEYS.items():
        default = f"`{key.default!r}`"
        lines.append(f"| `{name}` | {default} | {type_names(key)} | {_cell(key.doc)} |")
    lines += ["", "| Check id | Meaning |", "|---|---|"]
    lines += [f"| `{check_id}` | {_cell(text)} |" for check_id, text in CHECK_IDS.items()]
    return "\n".join(lines)


def write_table(path: Path) -> bool:
    """Replace the generated table between the markers in ``path``; True if it changed."""
    text = path.read_text()
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    new = text[: start + len(TABLE_START)] + "\n" + markdown_table() + "\n" + text[end:]
    if new != text:
        path.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m django_zerodeploy.conf",
        description="Print the ZERODEPLOY settings table, or write it into a Markdown page.",
    )
    parser.add_argument("--write", type=Path, metavar="PAGE", help="update the table in PAGE")
    args = parser.parse_args(argv)
    if args.write:
        changed = write_table(args.write)
        print(f"{args.write}: {'updated' if changed else 'already up to date'}")
    else:
        print(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
