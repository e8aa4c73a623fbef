"""The example site in the startproject shape (SQLite, a ``.env`` and media inside the checkout,
all git-ignored) and the releases layout made from it with ``deploy --init-releases``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support.site import Site


def in_checkout_env(site: Site, **extra: str) -> dict[str, str]:
    """The site's environment with the database at BASE_DIR / "db.sqlite3" (Django's default)."""
    env = site.env(**extra)
    env.pop("EXAMPLE_DB_PATH", None)
    return env


def shape_like_startproject(site: Site) -> None:
    """Put SQLite, a .env and media/ inside the server checkout, git-ignored."""
    exclude = site.server / ".git" / "info" / "exclude"
    exclude.write_text(exclude.read_text() + "\n.env\nmedia/\n")
    (site.server / ".env").write_text("EXAMPLE_SECRET=from-dotenv\n")
    (site.server / "media" / "uploads").mkdir(parents=True)
    (site.server / "media" / "uploads" / "a.txt").write_text("uploaded")
    run_manage(site, site.server, "migrate", "--noinput")


def run_manage(
    site: Site, cwd: Path, *args: str, python: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python or sys.executable, "manage.py", *args],
        cwd=cwd,
        env=in_checkout_env(site),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def applied_migrations(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from django_migrations").fetchone()[0]


def init_releases(site: Site, root: Path) -> subprocess.CompletedProcess[str]:
    result = run_manage(site, site.server, "deploy", "--init-releases", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def release_python(root: Path) -> str:
    return os.fspath(root / "current" / ".venv" / "bin" / "python")


def deploy_from_current(
    site: Site, root: Path, *args: str, timeout: float = 400
) -> subprocess.CompletedProcess[str]:
    """``ROOT/current/.venv/bin/python manage.py deploy`` run from ROOT/current, as documented."""
    current = root / "current"
    env = site.env(PWD=str(current))
    return subprocess.run(
        [release_python(root), "manage.py", "deploy", "--no-input", *args],
        cwd=current,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def gunicorn_from_current(site: Site, root: Path) -> dict[str, object]:
    """Keyword arguments for the Gunicorn fixture: started from ROOT/current with its venv."""
    current = root / "current"
    bin_dir = current / ".venv" / "bin"
    return {"cwd": current, "launcher": [str(bin_dir / "python"), str(bin_dir / "gunicorn")]}
