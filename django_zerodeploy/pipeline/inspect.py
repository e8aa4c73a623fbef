"""The preflight of a release in ONE fresh interpreter running its code (from the worktree):
Django's system checks, the WSGI import, the URLconf, the smoke URLs and the migration plan.

One interpreter instead of one per check: each start of a Django project costs a few hundred
milliseconds of CPU, and the deploy's wall time is mostly that. The pieces are the shared ones:
``preflight.check_urlconf`` and ``preflight.smoke`` (also run by the Gunicorn hook), Django's own
``get_internal_wsgi_application`` and ``check``, and ``zerodeploy_migrations plan --json``.

    python -m django_zerodeploy.pipeline.inspect '{"code_dir": ..., "smoke_urls": [...], ...}'
"""

from __future__ import annotations

import io
import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import proc

MARK = "ZERODEPLOY-INSPECT-RESULT "


@dataclass
class Inspection:
    """What the release's interpreter found. ``failed``: the first check that failed
    ("setup", "import-wsgi", "urlconf", "check", "smoke", "" when none), with ``message``."""

    ok: bool
    failed: str = ""
    message: str = ""
    output: str = ""
    smoke_failures: list[str] = field(default_factory=list)
    plan_returncode: int | None = None
    plan_stdout: str = ""
    patterns: int = 0


def _last(exc: BaseException) -> str:
    """``Type: message``, and the root cause when Django wrapped it (ImproperlyConfigured)."""
    text = f"{type(exc).__name__}: {exc}"
    root = exc
    while (root.__cause__ or root.__context__) is not None and root is not (
        root.__cause__ or root.__context__
    ):
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    if root is not exc:
        text += f" (caused by {type(root).__name__}: {root})"
    return text


def _plan(args: dict[str, Any]) -> tuple[int, str]:
    """(exit code, stdout) of ``zerodeploy_migrations plan --json``, or, without that command,
    the same JSON shape from Django's own migration plan (every migration 'pre')."""
    from django.core.management import call_command, get_commands

    if "zerodeploy_migrations" in get_commands():
        out = io.StringIO()
        extra = ["--allow-unsafe"] if args.get("allow_unsafe") else []
        try:
            call_command(
                "zerodeploy_migrations", "plan", "--json", *extra, stdout=out, stderr=io.StringIO()
            )
            code = 0
        except SystemExit as exc:  # the command exits 1 when it refuses
            code = int(exc.code or 0)
        return code, out.getvalue()
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    pending = [
        {
            "app": m.app_label,
            "name": m.name,
            "stage": "pre",
            "acknowledged": False,
            "operations": [],
        }
        for m, backwards in plan
        if not backwards
    ]
    return 0, json.dumps({"pending": pending, "unsafe": [], "errors": []})


def _child(args: dict[str, Any]) -> dict[str, Any]:
    code_dir = args["code_dir"]
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    result: dict[str, Any] = {"ok": False, "failed": "setup", "message": ""}
    try:
        import django

        django.setup()
        from django.core.servers.basehttp import get_internal_wsgi_application

        result["failed"] = "import-wsgi"
        app = get_internal_wsgi_application()
        from ..preflight import check_urlconf, smoke

        result["failed"] = "urlconf"
        result["patterns"] = check_urlconf()
        result["failed"] = "check"
        from django.core.management import call_command
        from django.core.management.base import CommandError

        try:
            call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
        except CommandError as exc:  # SystemCheckError: the formatted list of errors
            print(str(exc), file=sys.stderr)
            return {**result, "message": "manage.py check found errors"}
        result["failed"] = "plan"
        result["plan_returncode"], result["plan_stdout"] = _plan(args)
        result["failed"] = "smoke"
        result["smoke_failures"] = smoke(app, args.get("smoke_urls") or [])
        result["failed"] = ""
        result["ok"] = True
        return result
    except BaseException as exc:  # noqa: BLE001 - the point is to report it
        traceback.print_exception(exc, file=sys.stderr)
        return {**result, "message": _last(exc)}


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    try:
        result = _child(args)
    finally:
        sys.stderr.flush()
    sys.stdout.write("\n" + MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result.get("ok") else 1


def inspect(
    python: str,
    code_dir: Path,
    env: dict[str, str],
    *,
    smoke_urls: list[str],
    allow_unsafe: bool,
    timeout: float,
) -> Inspection:
    """Run the inspection of the release in ``code_dir`` in a fresh interpreter."""
    payload = {"code_dir": str(code_dir), "smoke_urls": smoke_urls, "allow_unsafe": allow_unsafe}
    ran = proc.run(
        [python, "-m", "django_zerodeploy.pipeline.inspect", json.dumps(payload)],
        cwd=code_dir,
        env=env,
        timeout=timeout,
    )
    before, _, after = ran.stdout.partition(MARK)
    output = proc.redact("\n".join(filter(None, [before.strip(), ran.stderr.strip()])))
    try:
        data = json.loads(after.splitlines()[0]) if after else None
    except ValueError:
        data = None
    if data is None:
        why = f"timed out after {timeout:g} s" if ran.timed_out else f"exited {ran.returncode}"
        return Inspection(
            False, "setup", f"the release's interpreter {why}: {ran.last_lines(1)}", output
        )
    return Inspection(
        ok=bool(data.get("ok")),
        failed=str(data.get("failed") or ""),
        message=proc.redact(str(data.get("message") or "")),
        output=output,
        smoke_failures=[proc.redact(f) for f in data.get("smoke_failures") or []],
        plan_returncode=data.get("plan_returncode"),
        plan_stdout=str(data.get("plan_stdout") or ""),
        patterns=int(data.get("patterns") or 0),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
