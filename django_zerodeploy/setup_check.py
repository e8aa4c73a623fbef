"""``deploy --check``: is this host set up so that a deploy would work?

It looks at the real setup, never at what the documentation assumes: the running Gunicorn
master (its command line and user), whether our hook runs in it, the middleware, the URL
include, ``HEALTHZ_URL``, the pidfile, the runtime directory as each process of the site sees
it, and the systemd unit (through ``systemctl show``). Each piece is a ``Finding``: in place, or
missing with the one line that adds it. Nothing is signalled and nothing is changed.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from . import exit_codes, proc
from .conf import app_settings
from .config_snippets import HOOK_LINE, healthz_path, suggested_runtime_dir, wsgi_app_spec
from .exit_codes import CommandFailure
from .runtime import default_runtime_dir

MIDDLEWARE = "django_zerodeploy.middleware.HealthCheckMiddleware"
UNIT_PROPERTIES = ("Type", "ExecReload", "KillMode", "NotifyAccess", "PrivateTmp", "User")
_MARK = "ZERODEPLOY-SETUP "


@dataclass
class Finding:
    """One piece of the setup: in place (``ok``) or missing, with the line that adds it.
    A missing piece that is not ``required`` is reported but does not fail the check."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def lines(self) -> list[str]:
        mark = "ok  " if self.ok else ("MISS" if self.required else "warn")
        out = [f"[{mark}] {self.name}: {self.detail}"]
        if self.fix and not self.ok:
            out.append(f"       fix: {self.fix}")
        return out


@dataclass
class SetupReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok or not f.required for f in self.findings)

    @property
    def exit_code(self) -> int:
        return exit_codes.OK if self.ok else exit_codes.USAGE

    @property
    def missing(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def as_text(self) -> str:
        lines = [line for f in self.findings for line in f.lines()]
        required = [f for f in self.missing if f.required]
        lines.append(
            "A deploy would work."
            if self.ok
            else f"{len(required)} required piece(s) missing: a deploy would not work."
        )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings]}


# -- Django side: what this checkout's settings and URLconf hold --------------------------------
def check_middleware() -> Finding:
    from django.conf import settings

    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE not in middleware:
        return Finding(
            "middleware",
            False,
            f"{MIDDLEWARE} is not in MIDDLEWARE: load balancer probes by IP get 400",
            f'MIDDLEWARE.insert(0, "{MIDDLEWARE}")  # in settings.py',
        )
    if middleware[0] != MIDDLEWARE:
        return Finding(
            "middleware",
            False,
            f"{MIDDLEWARE} is in MIDDLEWARE but not first: earlier middleware may reject probes",
            f'put "{MIDDLEWARE}" first in MIDDLEWARE',
            required=False,
        )
    return Finding("middleware", True, f"{MIDDLEWARE} is first in MIDDLEWARE")


def check_checkout() -> Finding:
    """What the environment step of a deploy requires of the checkout."""
    from .git import Git, GitError

    repo = app_settings.repo_dir
    git = Git(repo, timeout=30)
    try:
        git.head()
    except GitError:
        return Finding(
            "checkout",
            False,
            f"{repo} is not a git checkout with a commit",
            "git clone URL " + str(repo),
        )
    branch = git.current_branch()
    if not branch:
        return Finding("checkout", False, f"{repo} has a detached HEAD", "git switch BRANCH")
    upstream = git.upstream(branch)
    if not upstream and not app_settings.BRANCH:
        return Finding(
            "checkout",
            False,
            f"branch {branch} has no upstream",
            f"git branch --set-upstream-to={app_settings.REMOTE}/{branch}",
        )
    modified = git.modified_tracked_files()
    if modified:
        return Finding(
            "checkout",
            False,
            f"tracked files are modified in {repo}: {', '.join(modified[:5])}",
            "commit the change upstream, or git restore FILE",
        )
    target = "/".join(upstream) if upstream else f"{app_settings.REMOTE}/{app_settings.BRANCH}"
    return Finding("checkout", True, f"{repo} on {branch}, follows {target}, clean")


def check_urls() -> Finding:
    path = healthz_path()
    if path is None:
        return Finding(
            "URL include",
            False,
            "django_zerodeploy.urls is not included in the URLconf: there is no /healthz/",
            'path("", include("django_zerodeploy.urls")),  # in urls.py urlpatterns',
        )
    return Finding("URL include", True, f"django_zerodeploy.urls is included: health at {path}")


def check_healthz_url(master: Any) -> Finding:
    """``HEALTHZ_URL`` asked through the client the verify step uses (http, https or a Unix
    socket); unset, the socket Gunicorn binds, which is what the verify step then polls."""
    from . import healthz_url
    from .pipeline.serving import bind_url, healthz_release

    url = app_settings.HEALTHZ_URL
    bound = bind_url(master) if master is not None else None
    suggestion = f'ZERODEPLOY["HEALTHZ_URL"] = "{bound}"' if bound else ""
    if not url:
        release = healthz_release(bound) if bound else None
        return Finding(
            "HEALTHZ_URL",
            False,
            "not set: the verify step relies on the workers' reports alone"
            if release is None
            else f"not set: the verify step polls Gunicorn's bind {bound}, which answers: "
            f"release {release}",
            suggestion,
            required=False,
        )
    problem = healthz_url.problem(url)
    release = None if problem else healthz_release(url)
    if release is None:
        path = healthz_path() or "/healthz/"
        return Finding(
            "HEALTHZ_URL",
            False,
            problem or f"{url} does not answer with a release (is it this host's {path}?)",
            suggestion,
        )
    return Finding("HEALTHZ_URL", True, f"{url} answers: release {release}")


# -- Gunicorn side: the running master ---------------------------------------------------------
def check_master() -> tuple[Finding, Any]:
    from .gunicorn.finding import find_master
    from .gunicorn.processes import process_owner

    try:
        master = find_master()
    except CommandFailure as exc:
        return (
            Finding(
                "Gunicorn master",
                False,
                exc.message,
                f"start Gunicorn from the checkout: gunicorn -c gunicorn.conf.py {wsgi_app_spec()} "
                '(or set ZERODEPLOY["GUNICORN_PIDFILE"] to its pidfile)',
            ),
            None,
        )
    owner = "unknown"
    if master.process() is not None:
        owner = process_owner(master.process())
    cmdline = proc.redact(" ".join(master.cmdline))
    detail = f"{master.describe()}, user {owner}, started as: {cmdline}"
    return Finding("Gunicorn master", True, detail), master


def check_user(master: Any, strategy: str, unit: str | None) -> Finding:
    """Can this user reload ``master`` with ``strategy`` (the one the reload would run)?
    Decided as the deploy decides it: directly, or through ``sudo -n`` (``sudo -n -l``)."""
    from .gunicorn import privilege
    from .gunicorn.master import reload_blocked
    from .osutil import os_user

    failure = reload_blocked(master, strategy, unit)
    if failure is None:
        how = "through sudo -n" if privilege.needs_sudo(_uid(master.pid)) else "directly"
        return Finding("user", True, f"{os_user()} may reload it ({strategy}) {how}")
    first, _, line = failure.message.partition(":\n")
    return Finding("user", False, first, line.strip())


def _uid(pid: int) -> int | None:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).uids().effective
    return None


def check_hook(master: Any, config: Any) -> Finding:
    """Our post_worker_init runs in the live workers (they wrote the master's facts), or at
    least the configuration a restart would read loads it."""
    if master.facts is not None and master.facts.hooked:
        return Finding("Gunicorn hook", True, "the workers run django_zerodeploy's readiness hook")
    if config is not None and config.hooked:
        return Finding(
            "Gunicorn hook",
            False,
            "gunicorn.conf.py loads the hook, but the running workers have not reported "
            "through it (Gunicorn was started before, or uses another runtime directory)",
            "restart Gunicorn once (e.g. systemctl restart UNIT) so that it loads the hook",
            required=False,
        )
    return Finding(
        "Gunicorn hook",
        False,
        "Gunicorn does not load django_zerodeploy.gunicorn_conf: a new generation's readiness "
        "cannot be observed from its workers",
        f"{HOOK_LINE}  # in gunicorn.conf.py, then restart Gunicorn once",
        required=False,  # whether a reload works without it is the reload check's verdict
    )


def check_pidfile(master: Any) -> Finding:
    configured = app_settings.GUNICORN_PIDFILE
    if configured:
        return Finding("pidfile", True, f"GUNICORN_PIDFILE {configured} names master {master.pid}")
    if master.pidfile is not None:
        return Finding(
            "pidfile",
            False,
            f"GUNICORN_PIDFILE is not set; the master writes {master.pidfile}",
            f'ZERODEPLOY["GUNICORN_PIDFILE"] = "{master.pidfile}"',
            required=False,
        )
    return Finding(
        "pidfile",
        False,
        "Gunicorn writes no pidfile: the master is found by scanning processes",
        f'pidfile = "/run/{app_settings.repo_dir.name}/gunicorn.pid"  # in gunicorn.conf.py',
        required=False,
    )


# -- the runtime directory, as each process of the site sees it ------------------------------
def site_settings(master: Any) -> dict[str, str]:
    """RUNTIME_DIR and the repository as the site's own settings give them in the master's
    environment (a ``.env`` or environment variables may differ from this shell's)."""
    from .preflight import child_env

    env = child_env(master.cwd, master.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", os.environ.get("DJANGO_SETTINGS_MODULE", ""))
    code = "from django_zerodeploy.setup_check import _child_main; _child_main()"
    ran = proc.run([master.python, "-c", code], cwd=master.cwd, env=env, timeout=60)
    if _MARK in ran.stdout:
        with contextlib.suppress(ValueError):
            return json.loads(ran.stdout.split(_MARK, 1)[1].splitlines()[0])
    return {}


def _child_main() -> None:
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
        return Finding("runtime directory", False, exc.message, _runtime_fix())
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
        _runtime_fix(),
    )


def _runtime_fix() -> str:
    return (
        f'ZERODEPLOY["RUNTIME_DIR"] = "{suggested_runtime_dir()}"  '
        "# in settings.py: one directory for every process of the site"
    )


# -- systemd -------------------------------------------------------------------------------
def unit_name(master: Any) -> str | None:
    from .gunicorn import systemd

    unit = app_settings.GUNICORN_SYSTEMD_UNIT
    if not unit and master is not None and master.under_systemd:
        unit = systemd.unit_of(master.pid)
    return unit


def check_unit(unit: str | None) -> list[Finding]:
    from .gunicorn import systemd

    if not unit:
        return [Finding("systemd unit", True, "Gunicorn does not run under systemd")]
    try:
        props = systemd.properties(unit, UNIT_PROPERTIES)
    except CommandFailure as exc:
        return [
            Finding("systemd unit", False, exc.message, "set GUNICORN_SYSTEMD_UNIT to the unit")
        ]
    return evaluate_unit(unit, props, app_settings.RELOAD_STRATEGY, bool(app_settings.RUNTIME_DIR))


def evaluate_unit(
    unit: str, props: dict[str, str], strategy: str, runtime_configured: bool
) -> list[Finding]:
    """What the unit's properties (as ``systemctl show`` prints them) mean for a deploy."""
    shown = ", ".join(f"{k}={props.get(k, '')}" for k in UNIT_PROPERTIES)
    found = [Finding("systemd unit", True, f"{unit}: {shown}"), *_notify_findings(props, strategy)]
    reload_line = props.get("ExecReload", "")
    hup = "HUP" in reload_line and "MAINPID" in reload_line
    found.append(
        Finding(
            "unit ExecReload",
            hup or strategy != "systemd",
            ("a HUP to $MAINPID" if hup else (reload_line or "none"))
            + ": `systemctl reload` sends a bare HUP; deploy and reload_gunicorn gate it",
            "ExecReload=/bin/kill -s HUP $MAINPID  # in [Service]",
        )
    )
    kill_mode = props.get("KillMode", "")
    found.append(
        Finding(
            "unit KillMode",
            kill_mode in ("mixed", "control-group"),
            kill_mode or "unknown",
            "KillMode=mixed  # in [Service]: stop sends TERM to the master, then cleans up",
            required=False,
        )
    )
    private = props.get("PrivateTmp", "") in ("yes", "true", "1")
    found.append(
        Finding(
            "unit PrivateTmp",
            not private or runtime_configured,
            "yes: Gunicorn has its own /tmp" if private else "no",
            _runtime_fix(),
        )
    )
    found.append(Finding("unit User", True, props.get("User") or "root (no User=)"))
    return found


def _notify_findings(props: dict[str, str], strategy: str) -> list[Finding]:
    """Type= and NotifyAccess=: what a USR2 under systemd needs to hand MAINPID over."""
    usr2 = strategy == "usr2"
    found = []
    kind = props.get("Type", "")
    found.append(
        Finding("unit Type", True, "notify: systemd can be told the new master after a USR2")
        if kind == "notify"
        else Finding(
            "unit Type",
            not usr2,
            f"{kind or 'unknown'}: a USR2 under systemd needs Type=notify (Gunicorn #2856)",
            "Type=notify  # in [Service]",
            required=False,  # the reload check says whether the strategy still works
        )
    )
    notify = props.get("NotifyAccess", "")
    found.append(
        Finding(
            "unit NotifyAccess",
            notify == "all" or not usr2,
            f"{notify or 'none'}"
            + ("" if notify == "all" else ": the new master's workers cannot notify systemd"),
            "NotifyAccess=all  # in [Service]",
            required=False,
        )
    )
    return found


def check_reload(master: Any, config: Any, decision: tuple | None) -> Finding:
    """The refusals the reload itself would make: ``decision`` is its own (``plan``)."""
    if decision is None:
        error = config.error if config is not None else "unknown"
        return Finding("reload", False, error, "fix gunicorn.conf.py until it loads")
    chosen, why, refused = decision
    if refused:
        return Finding("reload", False, f"strategy {chosen}: {refused[1]}")
    detail = f"strategy {chosen} would reload master {master.pid}"
    if why:
        detail += f" ({why})"
    if not config.hooked:
        detail += "; readiness observed from outside (no hook)"
    return Finding("reload", True, detail)


def check_setup() -> SetupReport:
    """Every check, in the order an operator sets things up."""
    from .gunicorn.reloader import _probe, plan

    report = SetupReport([check_checkout(), check_middleware(), check_urls()])
    master_finding, master = check_master()
    report.findings.append(master_finding)
    report.findings.append(check_healthz_url(master))
    if master is None:
        return report
    config = _probe(master, timeout=60)
    unit = unit_name(master)
    decision = plan(master, config) if config.ok else None  # as the reload decides it
    strategy = decision[0] if decision else app_settings.RELOAD_STRATEGY
    report.findings += [
        check_user(master, strategy, unit),
        check_hook(master, config if config.ok else None),
        check_pidfile(master),
        check_runtime_dir(master),
        *check_unit(unit),
    ]
    report.findings.append(check_reload(master, config, decision))
    return report
