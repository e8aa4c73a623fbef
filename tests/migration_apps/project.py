"""A throwaway project on disk (settings + case apps) and real databases for it.

Everything runs in subprocesses (``python -m django ...``) exactly as the deploy pipeline
runs the command: a fresh interpreter, the project's settings, a real SQLite file or a real
PostgreSQL database created for the test module and dropped afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.site import EXAMPLE, REPO_ROOT

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}

BASE_MODEL = """
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("title", models.CharField(max_length=200)),
                ("nick", models.CharField(max_length=50, null=True)),
                ("count", models.IntegerField(default=0)),
                ("legacy", models.CharField(max_length=20, db_column="legacy_col", null=True)),
            ],
            options={"indexes": [models.Index(fields=["title"], name="%(short)s_tix")],
                     "constraints": [models.CheckConstraint(%(check)s, name="%(app)s_count_ck")]},
        ),
"""


def _check_kwarg() -> str:
    import django

    # CheckConstraint(check=...) became condition= in Django 5.1 (check= removed in 6.0)
    return (
        "condition=models.Q(count__gte=0)"
        if django.VERSION >= (5, 1)
        else "check=models.Q(count__gte=0)"
    )


def pg_available() -> str | None:
    """None if PostgreSQL answers, else the reason it does not."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a test dependency
        return f"psycopg is not installed: {exc}"
    try:
        with psycopg.connect(dbname="postgres", connect_timeout=3, **PG):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable on 127.0.0.1:5432 as postgres: {exc}".strip()


def require_postgres() -> None:
    """Skip a PostgreSQL test, with the reason, where no server answers; in CI (CI=true), where
    the machine runs one, fail instead, so a missing server can never turn the run green."""
    import os

    import pytest

    reason = pg_available()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"CI runs PostgreSQL, but: {reason}")
    if reason:
        pytest.skip(reason)


def pg_create(prefix: str = "zd_mig") -> str:
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def pg_drop(name: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Case:
    """One app: its pending migration's operations (Python source) and the marker, if any."""

    app: str
    operations: str
    marker: str = ""  # e.g. '{"stage": "post"}'
    atomic: bool = True
    extra_imports: str = ""
    extra_dependencies: str = ""  # more entries for 0002's dependencies list


@dataclass
class CaseProject:
    root: Path
    engine: str  # "sqlite" or "postgresql"
    db_name: str = ""
    cases: list[Case] = field(default_factory=list)

    @property
    def package(self) -> Path:
        return self.root / "pkg"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.update(
            DJANGO_SETTINGS_MODULE="casesettings",
            PYTHONPATH=os.pathsep.join([str(self.package), str(EXAMPLE), str(REPO_ROOT)]),
            EXAMPLE_DB_PATH=str(self.root / "db.sqlite3"),
            ZERODEPLOY_RUNTIME_DIR=str(self.root / "run"),
            PYTHONUNBUFFERED="1",
        )
        if self.engine == "postgresql":
            env.update(EXAMPLE_DB_ENGINE="postgresql", EXAMPLE_DB_NAME=self.db_name)
        return env

    def write_settings(self) -> None:
        self.package.mkdir(parents=True, exist_ok=True)
        apps = ", ".join(repr(c.app) for c in self.cases)
        (self.package / "casesettings.py").write_text(
            "from exampleproject.settings import *  # noqa\n"
            "# the cases need no admin: keep this project independent of admin modules\n"
            f"INSTALLED_APPS = [a for a in INSTALLED_APPS if a != 'django.contrib.admin'] + [{apps}]\n"
            "ROOT_URLCONF = 'caseurls'\n"
            "ZERODEPLOY = {**ZERODEPLOY, 'SMOKE_URLS': []}\n"
        )

    def write_urls(self) -> None:
        (self.package / "caseurls.py").write_text("urlpatterns = []\n")

    def write_initial(self) -> None:
        """Each case app with its 0001_initial only (what the serving release has applied)."""
        self.write_settings()
        self.write_urls()
        for case in self.cases:
            app = self.package / case.app
            (app / "migrations").mkdir(parents=True, exist_ok=True)
            (app / "__init__.py").write_text("")
            (app / "migrations" / "__init__.py").write_text("")
            (app / "migrations" / "0001_initial.py").write_text(
                "from django.db import migrations, models\n\n\n"
                "class Migration(migrations.Migration):\n"
                "    initial = True\n"
                "    dependencies = []\n"
                "    operations = ["
                + BASE_MODEL % {"app": case.app, "short": case.app[:20], "check": _check_kwarg()}
                + "    ]\n"
            )

    def write_pending(self) -> None:
        """Each case's 0002 (the new release's migration)."""
        for case in self.cases:
            self.write_migration(
                case.app,
                "0002_change",
                case.operations,
                marker=case.marker,
                atomic=case.atomic,
                imports=case.extra_imports,
                dependencies=f'("{case.app}", "0001_initial"), {case.extra_dependencies}',
            )

    def write_migration(
        self,
        app: str,
        name: str,
        operations: str,
        *,
        dependencies: str,
        marker: str = "",
        atomic: bool = True,
        imports: str = "",
    ) -> None:
        marker_line = f"    zerodeploy = {marker}\n" if marker else ""
        atomic_line = "" if atomic else "    atomic = False\n"
        body = textwrap.indent(textwrap.dedent(operations).strip(), " " * 8)
        (self.package / app / "migrations" / f"{name}.py").write_text(
            "from django.db import migrations, models\n"
            f"{imports}\n\n\n"
            "class Migration(migrations.Migration):\n"
            f"{marker_line}{atomic_line}"
            f"    dependencies = [{dependencies}]\n"
            "    operations = [\n"
            f"{body}\n"
            "    ]\n"
        )

    def django(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def migrate_initial(self) -> None:
        result = self.django("migrate", "--noinput")
        assert result.returncode == 0, result.stdout + result.stderr

    def plan(self, *extra: str) -> tuple[int, dict, str]:
        result = self.django("zerodeploy_migrations", "plan", "--json", *extra)
        try:
            data = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"not JSON ({exc}):\n{result.stdout}\n{result.stderr}") from exc
        return result.returncode, data, result.stderr

    def applied(self) -> set[tuple[str, str]]:
        code = (
            "import django, json; django.setup()\n"
            "from django.db.migrations.recorder import MigrationRecorder\n"
            "from django.db import connection\n"
            "print(json.dumps(sorted(MigrationRecorder(connection).applied_migrations())))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return {tuple(x) for x in json.loads(result.stdout)}
