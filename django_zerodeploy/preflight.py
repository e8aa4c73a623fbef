"""Does a release load and answer? Checked in a fresh interpreter before it takes traffic.

``preflight(code_dir)`` starts ``python -m django_zerodeploy.preflight`` with ``code_dir`` as
working directory and first on ``sys.path``. In that ONE interpreter it imports the WSGI
application, loads the URLconf, optionally runs Django's system checks and the migration plan
(``zerodeploy_migrations plan``), then requests each smoke URL through the WSGI callable. A fresh
process matters: the caller's own modules are the *old* release. One process for all of it
matters too: each start of a Django project costs CPU, and a deploy's wall time is mostly that.

The in-process pieces (``check_urlconf``, ``smoke``) are also what a Gunicorn worker runs in
``gunicorn_conf.post_worker_init`` before it accepts its first connection.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import proc

STEPS = ("import-wsgi", "urlconf", "check", "plan", "smoke")
_MARK = "ZERODEPLOY-PREFLIGHT-RESULT "
_CHECK_ERROR = re.compile(r"\(\w+\.E\d+\)")  # a system check error: "app.M.f: (fields.E130) ..."
_SETTINGS_IN_MANAGE = re.compile(
    r"""setdefault\(\s*["']DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']\s*\)"""
)
# Environment a Gunicorn master got from its parent or from systemd: never hand it on, or the
# preflight interpreter would believe it is a re-executed master or talk to systemd.
# The preflight shares the machine with the site it protects: importing an app is CPU work that
# should come after serving requests (a nice value of 10 weighs about a tenth of 0).
NICE = 10
PROCESS_ONLY_ENV = (
    "GUNICORN_FD",
    "GUNICORN_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "SERVER_SOFTWARE",
)


@dataclass
class PreflightResult:
    ok: bool
    step: str  # "import-wsgi", "urlconf", "check", "plan", "smoke" — what failed, or "ok"
    message: str  # one readable sentence
    output: str  # captured output (last traceback frames, check errors), redacted
    duration: float
    patterns: int = 0  # URL patterns loaded
    smoke_failures: list[str] = field(default_factory=list)
    # ``zerodeploy_migrations plan --json`` as the release sees the database (migration_plan=True)
    plan_returncode: int | None = None
    plan_stdout: str = ""
    plan_stderr: str = ""  # redacted


# -- in-process checks (run inside the release's interpreter) ---------------------------------
def check_urlconf() -> int:
    """Import the root URLconf and every included one; returns the number of patterns. Raises
    what the URLconf raises."""
    from django.urls import URLPattern, URLResolver, get_resolver

    resolver = get_resolver()

    def walk(patterns: Iterable[Any]) -> int:
        count = 0
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                count += walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                _ = pattern.lookup_str  # resolves the view's dotted path
                count += 1
        return count

    count = walk(resolver.url_patterns)
    _ = resolver.reverse_dict  # populates names and namespaces, as the first request would
    return count


def system_check_errors() -> list[str]:
    """Django's system checks as ``manage.py check`` runs them (no database checks): the
    errors it would fail on (ERROR and above, not silenced), one line each."""
    from django.core import checks

    messages = checks.run_checks(include_deployment_checks=False)
    return [str(m) for m in messages if m.is_serious() and not m.is_silenced()]


def smoke_host() -> str:
    """A Host header the project accepts (ALLOWED_HOSTS), for in-process requests."""
    from django.conf import settings

    for host in getattr(settings, "ALLOWED_HOSTS", []) or []:
        if host and host != "*":
            return host.lstrip(".")
    return "localhost"


def call_wsgi(app: Callable[..., Any], path: str, host: str | None = None) -> tuple[int, bytes]:
    """GET ``path`` through a WSGI callable in this process; returns (status, first bytes)."""
    from wsgiref.util import setup_testing_defaults

    host = host or smoke_host()
    path_info, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "HTTP_HOST": host,
        "SERVER_NAME": host,
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": "django-zerodeploy smoke",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multiprocess": True,
        "wsgi.multithread": False,
    }
    setup_testing_defaults(environ)
    status: list[str] = []

    def start_response(line: str, headers: list[Any], exc_info: Any = None) -> Callable[..., Any]:
        status[:] = [line]
        return lambda data: None

    body = app(environ, start_response)
    head = b""
    try:
        for chunk in body:
            if len(head) < 2000:
                head += chunk
    finally:
        close = getattr(body, "close", None)
        if close:
            close()
    return int(status[0].split()[0]) if status else 500, head[:2000]


def smoke(app: Callable[..., Any], urls: Sequence[str]) -> list[str]:
    """Request each URL in-process; returns one sentence per URL that answered 5xx or raised."""
    failures = []
    for url in urls:
        try:
            code, _ = call_wsgi(app, url)
        except Exception as exc:  # noqa: BLE001 - any error is a refusal, said in words
            failures.append(f"{url} raised {type(exc).__name__}: {exc}")
            continue
        if code >= 500:
            failures.append(f"{url} answered {code}")
    return failures


# -- the fresh interpreter ------------------------------------------------------------------
def _settings_module(code_dir: Path) -> str | None:
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        return os.environ["DJANGO_SETTINGS_MODULE"]
    manage = code_dir / "manage.py"
    if manage.is_file():
        match = _SETTINGS_IN_MANAGE.search(manage.read_text(errors="replace"))
        if match:
            return match.group(1)
    return None


def _import_app(spec: str) -> Any:
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    module = importlib.import_module(module_name)
    app = module
    for part in attr.split("."):
        app = getattr(app, part)
    if not callable(app):
        raise TypeError(f"{spec} is not callable")
    return app


def _migration_plan(allow_unsafe: bool) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``zerodeploy_migrations plan --json`` in this
    interpreter. Separate buffers: a warning on stderr must not break the JSON on stdout."""
    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    extra = ["--allow-unsafe"] if allow_unsafe else []
    try:
        call_command("zerodeploy_migrations", "plan", "--json", *extra, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:  # the command exits 1 when it refuses
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


_FAILED = {
    "import-wsgi": "The WSGI application failed to import",
    "urlconf": "The URLconf failed to load",
    "check": "manage.py check failed",
    "plan": "The migration plan could not be made",
    "smoke": "A smoke request failed",
}


def _child(args: dict[str, Any]) -> dict[str, Any]:
    """The preflight itself, in the release's interpreter."""
    code_dir = Path(args["code_dir"])
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    result: dict[str, Any] = {"ok": False, "step": "import-wsgi"}
    try:
        return _child_steps(args, code_dir, result)
    except BaseException as exc:  # noqa: BLE001 - the whole point is to report it
        frames = traceback.format_exception(exc)
        traceback.print_exception(exc, file=sys.stderr)
        last = "".join(frames).strip().splitlines()[-1] if frames else repr(exc)
        return {**result, "message": f"{_FAILED[result['step']]}: {last}"}


def _child_steps(args: dict[str, Any], code_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The checks in order, each noting its step in ``result`` so a crash names the step."""
    spec = args.get("wsgi_app")
    if not spec:
        module = _settings_module(code_dir)
        if not module:
            result["message"] = (
                "DJANGO_SETTINGS_MODULE is not set "
                "and manage.py does not name it: cannot tell which WSGI app to import."
            )
            return result
        spec = _setup_django(module)
    app = _import_app(spec)
    result["step"] = "urlconf"
    result["patterns"] = check_urlconf()
    if args.get("manage_check"):
        result["step"] = "check"
        failed = _manage_check_failure()
        if failed:
            result["message"] = failed
            return result
    if args.get("migration_plan"):
        result["step"] = "plan"
        code, out, err = _migration_plan(bool(args.get("allow_unsafe")))
        result["plan_returncode"], result["plan_stdout"], result["plan_stderr"] = code, out, err
    result["step"] = "smoke"
    urls = args.get("smoke_urls") or []
    result["smoke_failures"] = smoke(app, urls)
    if result["smoke_failures"]:
        result["message"] = "Smoke URL failed: " + "; ".join(result["smoke_failures"]) + "."
        return result
    return {
        **result,
        "ok": True,
        "step": "ok",
        "message": f"{spec} imported, {result['patterns']} URL patterns "
        f"loaded, {len(urls)} smoke URL(s) answered.",
    }


def _setup_django(module: str) -> str:
    """Set Django up with the release's settings to learn its WSGI_APPLICATION."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", module)
    import django
    from django.conf import settings

    django.setup(set_prefix=False)
    return settings.WSGI_APPLICATION


def _manage_check_failure() -> str | None:
    """Django's system checks; the first errors as one message (all printed), or None."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    try:
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    except CommandError as exc:  # SystemCheckError: the formatted list of errors
        print(str(exc), file=sys.stderr)
        errors = [ln.strip() for ln in str(exc).splitlines() if _CHECK_ERROR.search(ln)]
        return "manage.py check failed: " + ("; ".join(errors[:5]) or "see the output")
    return None


def _main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    try:
        result = _child(args)
    finally:
        sys.stderr.flush()
    sys.stdout.write("\n" + _MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result.get("ok") else 1


def child_env(code_dir: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    """``env`` (default: ours) with ``code_dir`` first on PYTHONPATH and a master's
    process-only variables removed."""
    base = dict(os.environ if env is None else env)
    for name in PROCESS_ONLY_ENV:
        base.pop(name, None)
    base.pop("PYTHONSTARTUP", None)
    paths = [p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(code_dir)]
    base["PYTHONPATH"] = os.pathsep.join([str(code_dir), *paths])
    return base


def niced(argv: list[str]) -> list[str]:
    """``argv`` run with a lower CPU priority when ``nice`` is available."""
    nice = shutil.which("nice")
    return [nice, "-n", str(NICE), *argv] if nice else argv


def _last_frames(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def preflight(
    code_dir: Path,
    *,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    wsgi_app: str | None = None,
    manage_check: bool = False,
    smoke_urls: Sequence[str] = (),
    timeout: float | None = None,
    migration_plan: bool = False,
    allow_unsafe: bool = False,
) -> PreflightResult:
    """Check, in a fresh subprocess, that the release in ``code_dir`` imports and answers.

    ``manage_check`` adds Django's system checks; ``migration_plan`` adds the pending
    migrations' plan (``allow_unsafe`` acknowledges unsafe operations), returned raw for the
    deploy pipeline to judge."""
    started = time.monotonic()
    code_dir = Path(code_dir).resolve()
    child = child_env(code_dir, env)
    secrets = proc.secret_values(child)
    if timeout is None:
        from .conf import app_settings

        timeout = float(app_settings.STEP_TIMEOUT)
    payload = {
        "code_dir": str(code_dir),
        "wsgi_app": wsgi_app,
        "smoke_urls": list(smoke_urls),
        "manage_check": manage_check,
        "migration_plan": migration_plan,
        "allow_unsafe": allow_unsafe,
    }
    ran = proc.run(
        niced([python, "-m", "django_zerodeploy.preflight", json.dumps(payload)]),
        cwd=code_dir,
        env=child,
        timeout=timeout,
    )
    result = _reported(ran.stdout)
    if result is None:
        why = f"timed out after {timeout:g} s" if ran.timed_out else f"exited {ran.returncode}"
        last = _last_frames(ran.output, 1)
        message = f"The preflight interpreter {why}: {last}".rstrip(": ")
        return _redacted_result(False, "import-wsgi", message, ran.output, secrets, started)
    output = ran.stdout.split(_MARK)[0] + ("\n" + ran.stderr if ran.stderr else "")
    ok, step, message = bool(result.pop("ok")), str(result.pop("step")), result.pop("message", "")
    return _redacted_result(ok, step, str(message), output, secrets, started, result)


def _reported(stdout: str) -> dict[str, Any] | None:
    """The child's JSON answer after the mark; None when it died before printing one."""
    if _MARK not in stdout:
        return None
    try:
        return json.loads(stdout.split(_MARK, 1)[1].splitlines()[0])
    except ValueError:
        return None


def _redacted_result(
    ok: bool,
    step: str,
    message: str,
    output: str,
    secrets: Sequence[str],
    started: float,
    found: Mapping[str, Any] | None = None,
) -> PreflightResult:
    """The result with the child's secrets taken out of everything it printed."""
    found = found or {}
    return PreflightResult(
        ok,
        step,
        proc.redact(message, secrets),
        proc.redact(_last_frames(output), secrets),
        time.monotonic() - started,
        patterns=int(found.get("patterns") or 0),
        smoke_failures=[proc.redact(f, secrets) for f in found.get("smoke_failures") or []],
        plan_returncode=found.get("plan_returncode"),
        plan_stdout=str(found.get("plan_stdout") or ""),
        plan_stderr=proc.redact(str(found.get("plan_stderr") or ""), secrets),
    )


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
