"""A real example site in git: a bare *origin*, a *dev* clone that makes releases and a *server*
clone where the site runs. No mocks: every later test deploys through these."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "example_project"
VENV_BIN = Path(sys.executable).parent
_IGNORE = shutil.ignore_patterns("db.sqlite3", "staticfiles", "__pycache__", "*.pyc")


def git(cwd: Path, *args: str) -> str:
    """Run git for a fixture; failures raise with git's own message."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    result = subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass
class Site:
    """The example site's repositories and the host-local state of its server."""

    root: Path
    origin: Path
    dev: Path
    server: Path
    runtime: Path
    db_path: Path
    static_root: Path
    port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    release_app = "notes"  # the app whose release.py holds RELEASE_NAME

    @property
    def python(self) -> str:
        """The interpreter that runs the server's code: the test venv's."""
        return sys.executable

    @property
    def pidfile(self) -> Path:
        return self.runtime / "gunicorn.pid"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for anything that runs the server's code (gunicorn, manage.py)."""
        env = dict(os.environ)
        for name in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH"):
            env.pop(name, None)
        env.update(
            PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            DJANGO_SETTINGS_MODULE="exampleproject.settings",
            EXAMPLE_DB_PATH=str(self.db_path),
            EXAMPLE_STATIC_ROOT=str(self.static_root),
            ZERODEPLOY_RUNTIME_DIR=str(self.runtime),
            ZERODEPLOY_PIDFILE=str(self.pidfile),
            PYTHONUNBUFFERED="1",
        )
        if self.port:
            env["ZERODEPLOY_HEALTHZ_URL"] = f"http://127.0.0.1:{self.port}/healthz/"
        env.update(self.extra_env)
        env.update(extra)
        return env

    def manage(
        self, *args: str, check: bool = True, timeout: float = 300, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run the server clone's manage.py with the venv's Python, as an operator would."""
        result = subprocess.run(
            [self.python, "manage.py", *args],
            cwd=self.server,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    # -- making releases -------------------------------------------------------------------
    def commit_release(
        self,
        name: str,
        files: dict[str, str | None] | None = None,
        message: str | None = None,
        push: bool = True,
    ) -> str:
        """Commit a release in dev (RELEASE_NAME = name, plus ``files``; None deletes) and push
        it to origin. Returns the new commit."""
        (self.dev / self.release_app / "release.py").write_text(f'RELEASE_NAME = "{name}"\n')
        for rel, text in (files or {}).items():
            path = self.dev / rel
            if text is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git(self.dev, "add", "-A")
        git(self.dev, "commit", "-q", "-m", message or f"Release {name}")
        if push:
            git(self.dev, "push", "-q", "origin", "HEAD:main")
        return git(self.dev, "rev-parse", "HEAD")

    def server_head(self) -> str:
        return git(self.server, "rev-parse", "HEAD")

    def server_branch(self) -> str:
        return git(self.server, "symbolic-ref", "--short", "HEAD")


def make_site(root: Path, *, migrate: bool = True) -> Site:
    """Build origin, dev and server from example_project, and prepare the server's database."""
    root.mkdir(parents=True, exist_ok=True)
    seed = root / "seed"
    shutil.copytree(EXAMPLE, seed, ignore=_IGNORE)
    git(seed, "init", "-q", "-b", "main")
    for cwd in (seed,):
        git(cwd, "config", "user.email", "dev@example.com")
        git(cwd, "config", "user.name", "Example Dev")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "Release v1")
    origin = root / "origin.git"
    git(root, "clone", "-q", "--bare", str(seed), str(origin))
    shutil.rmtree(seed)
    dev, server = root / "dev", root / "server"
    for clone in (dev, server):
        git(root, "clone", "-q", str(origin), str(clone))
        git(clone, "config", "user.email", "dev@example.com")
        git(clone, "config", "user.name", "Example Dev")
    runtime = root / "run"
    runtime.mkdir(mode=0o700)
    site = Site(
        root=root,
        origin=origin,
        dev=dev,
        server=server,
        runtime=runtime,
        db_path=root / "db.sqlite3",
        static_root=root / "static",
    )
    if migrate:
        site.manage("migrate", "--noinput")
        site.manage("collectstatic", "--noinput")
    return site
