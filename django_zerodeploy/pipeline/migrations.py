"""Pending migrations of a release, read by running that release's own ``manage.py``.

With the migration safety command installed (``zerodeploy_migrations``) the plan also carries
each migration's stage (pre-/post-deploy) and the classification of its operations; without it,
``showmigrations --plan`` gives the pending list and every migration runs before the reload.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.core.management import get_commands

from .. import proc
from ..conf import app_settings
from ..migration_safety import PendingMigration
from .project import Project

SAFETY_COMMAND = "zerodeploy_migrations"
_APPLYING = re.compile(r"Applying (?P<label>[\w.]+)\.\.\.")
_APPLIED = re.compile(r"^\s*applied (?P<label>\w+\.\w+)\s*$")  # zerodeploy_migrations apply
_SHOW_PLAN = re.compile(r"^\[(?P<mark>[ X])\]\s+(?P<label>\S+)")


def safety_available() -> bool:
    """True when the migration safety command is installed (it ships with this package)."""
    return SAFETY_COMMAND in get_commands()


@dataclass
class ReleaseMigrations:
    """The pending migrations of a release, as its own ``manage.py`` reported them."""

    ok: bool
    pending: list[PendingMigration] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unsafe: list[dict] = field(default_factory=list)
    output: str = ""
    returncode: int | None = None
    source: str = ""


def plan(
    project: Project, tree: Path, *, allow_unsafe: bool = False, timeout: float | None = None
) -> ReleaseMigrations:
    """The pending migrations of the code in ``tree`` against the live database, within
    ``timeout`` (default STEP_TIMEOUT)."""
    env = project.env(tree)
    timeout = app_settings.STEP_TIMEOUT if timeout is None else timeout
    if safety_available():
        args = project.manage(tree, SAFETY_COMMAND, "plan", "--json")
        if allow_unsafe:
            args.append("--allow-unsafe")
        result = proc.run(args, cwd=project.code_dir(tree), env=env, timeout=timeout)
        return _parse_safety(result)
    result = proc.run(
        project.manage(tree, "showmigrations", "--plan", "--no-color"),
        cwd=project.code_dir(tree),
        env=env,
        timeout=timeout,
    )
    if not result.ok:
        return ReleaseMigrations(
            False,
            errors=[result.last_lines(15)],
            output=result.output,
            returncode=result.returncode,
            source="showmigrations",
        )
    pending = []
    for line in result.stdout.splitlines():
        match = _SHOW_PLAN.match(line.strip())
        if match and match["mark"] == " ":
            app, _, name = match["label"].partition(".")
            pending.append(PendingMigration(app, name))
    return ReleaseMigrations(
        True, pending, output=result.output, returncode=0, source="showmigrations"
    )


def _parse_safety(result: proc.ProcResult) -> ReleaseMigrations:
    return parse_plan(result.returncode, result.stdout, result.output)


def parse_plan(
    returncode: int | None, stdout: str, output: str = "", source: str = SAFETY_COMMAND
) -> ReleaseMigrations:
    """The plan from ``zerodeploy_migrations plan --json`` output (or the same JSON shape)."""
    ok_exit = returncode == 0
    last = "\n".join(output.strip().splitlines()[-15:])
    try:
        data = json.loads(stdout)
    except ValueError:
        return ReleaseMigrations(
            False,
            errors=[last or "no plan printed"],
            output=output,
            returncode=returncode,
            source=source,
        )
    pending = [PendingMigration.from_dict(m) for m in data.get("pending") or []]
    errors = [str(e) for e in data.get("errors") or []]
    ok = ok_exit and not errors
    if not ok_exit and not errors:
        # "message": the whole refusal (app, migration, operation, why, safe sequence)
        errors = [str(data.get("message") or "") or last]
    return ReleaseMigrations(
        ok, pending, errors, list(data.get("unsafe") or []), output or stdout, returncode, source
    )


def applied_from_output(output: str) -> list[str]:
    """Migrations that ``migrate`` reported applying (``Applying app.name... OK``)."""
    lines = output.splitlines()
    applied = []
    for index, line in enumerate(lines):
        done = _APPLIED.match(line)
        if done:
            applied.append(done["label"])
            continue
        match = _APPLYING.search(line)
        if not match:
            continue
        rest = line[match.end() :] + (lines[index + 1] if index + 1 < len(lines) else "")
        if "OK" in rest.split("Applying")[0]:
            applied.append(match["label"])
    return applied
