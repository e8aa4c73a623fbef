"""The example site in the startproject shape (SQLite, a ``.env`` and media inside the checkout,
all git-ignored) and the releases layout made from it with ``deploy --init-releases``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from django_zerodeploy.releases.layout import ReleasesRoot
from tests.support.site import REPO_ROOT, Site
from tests.support.wheels import make_wheel


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
    """Keyword arguments for the Gunicorn fixture: started from ROOT/current as
    ``--init-releases`` prints it and a systemd ``ExecStart=`` runs it, the venv's ``gunicorn``
    script itself, so the interpreter is its ``#!`` line's ``ROOT/venvs/<key>/bin/python``."""
    current = root / "current"
    return {"cwd": current, "launcher": [str(current / ".venv" / "bin" / "gunicorn")]}


def use_wheelhouse(site: Site, folder: Path, name: str, versions: tuple[str, ...]) -> Path:
    """Wheels of ``name`` at each version, built here and offered to every pip the site's
    deploys run (beside the machine's own wheels): real installs, no network."""
    for version in versions:
        make_wheel(folder, name, version)
    links = " ".join(filter(None, [str(folder), os.environ.get("PIP_FIND_LINKS", "")]))
    site.extra_env["PIP_FIND_LINKS"] = links
    return folder


def requirements_with(*lines: str) -> str:
    """The example site's requirements.txt plus ``lines``, and this checkout of django-zerodeploy
    (a venv built for a release has only what its requirements say)."""
    base = (REPO_ROOT / "example_project" / "requirements.txt").read_text()
    extra = "".join(f"{line}\n" for line in lines)
    return f"{base}{extra}django-zerodeploy @ file://{REPO_ROOT}\n"


def serve_from_releases(
    site: Site, tmp_path: Path, gunicorn_factory: Any
) -> tuple[Path, ReleasesRoot, Any]:
    """The startproject-shaped site made a releases layout in ``tmp_path / "srv"`` (init), its
    SQLite database reached through ROOT/current, and Gunicorn started from ROOT/current."""
    shape_like_startproject(site)
    root_dir = tmp_path / "srv"
    init_releases(site, root_dir)
    site.extra_env["EXAMPLE_DB_PATH"] = str(root_dir / "current" / "db.sqlite3")
    server = gunicorn_factory(**gunicorn_from_current(site, root_dir))
    return root_dir, ReleasesRoot(root_dir), server


def deploy_under_load(
    site: Site, root: Path, server: Any, load_factory: Any, *args: str
) -> tuple[Any, Any]:
    """``deploy_from_current`` with the load running through it; the load must cover it."""
    load = load_factory(port=server.port, clients=3, max_seconds=280, timeout=30).start()
    try:
        with load.operation():
            result = deploy_from_current(site, root, *args)
    finally:
        report = load.stop()
    report.assert_covered()
    return result, report


def show(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr[-4000:]}"


def master_cwd(server: Any) -> Path:
    return Path(psutil.Process(server.master_pid()).cwd())


def step_line(out: str, name: str) -> str:
    """The line the deploy printed for step ``name``."""
    return next(ln for ln in out.splitlines() if ln.split()[:1] == [name])
