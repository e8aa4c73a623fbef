"""Where the project lives in its checkout, and the environment its subprocesses get.

The deploy runs the *new* code from a worktree beside the live checkout, then from the live
checkout itself. Both need the same interpreter, the same ``DJANGO_SETTINGS_MODULE`` and a
``PYTHONPATH`` that points into the right tree, never into the other one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from .. import proc
from ..conf import app_settings
from ..releases.layout import Layout, detect

# Every subprocess a deploy starts carries this variable, so that the next deploy can find the
# steps a killed deploy left running (their parent died; they did not) and wait for them.
OWNER_ENV = "ZERODEPLOY_DEPLOY_OWNER"


@dataclass(frozen=True)
class Project:
    """The live checkout, the folder holding manage.py inside it, and the settings module."""

    repo_dir: Path
    project_rel: Path
    settings_module: str
    python: str
    # the Gunicorn master's environment (Master.child_environ) when the deploy found one: the
    # release subprocesses see what the workers see; None: this process's own
    base_env: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def current(cls) -> Project:
        repo = app_settings.repo_dir
        return cls(repo, _project_rel(repo), _settings_module(), sys.executable)

    @property
    def live_dir(self) -> Path:
        return self.repo_dir / self.project_rel

    def code_dir(self, tree: Path) -> Path:
        """The folder holding manage.py inside ``tree`` (the live checkout or a worktree)."""
        return tree / self.project_rel

    def manage(self, tree: Path, *args: str) -> list[str]:
        return [self.python, str(self.code_dir(tree) / "manage.py"), *args]

    def owner_token(self) -> str:
        return f"{app_settings.runtime_dir}:{os.getpid()}"

    def env(
        self, tree: Path, extra: dict[str, str] | None = None, *, ours: bool = False
    ) -> dict[str, str]:
        """Environment for a subprocess that runs the code in ``tree``: ``base_env`` (unless
        ``ours``: pip is the deploy's tool, not the release) with what the deploy controls on
        top: the interpreter's folder first on PATH, the live project's settings module, the
        deploy's ZERODEPLOY_* variables, ``tree`` first on PYTHONPATH, and entries that pointed
        into the live checkout moved into ``tree``."""
        base = None if ours else self.base_env
        env = proc.python_env(self.code_dir(tree), base=base)
        if base is not None:
            env.update({k: v for k, v in os.environ.items() if k.startswith("ZERODEPLOY_")})
            bin_dir = os.path.dirname(self.python)
            paths = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p != bin_dir]
            env["PATH"] = os.pathsep.join([bin_dir, *paths])
        parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        moved = []
        for part in parts:
            path = Path(part)
            if tree != self.repo_dir and _inside(path, self.repo_dir):
                path = tree / path.resolve().relative_to(self.repo_dir)
            if str(path) not in moved:
                moved.append(str(path))
        env["PYTHONPATH"] = os.pathsep.join(moved)
        env["DJANGO_SETTINGS_MODULE"] = self.settings_module
        env[OWNER_ENV] = self.owner_token()
        if extra:
            env.update(extra)
        return env


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except (ValueError, OSError):
        return False


def _settings_module() -> str:
    return (
        os.environ.get("DJANGO_SETTINGS_MODULE") or getattr(settings, "SETTINGS_MODULE", "") or ""
    )


def _project_rel(repo: Path) -> Path:
    """manage.py's folder relative to the checkout: BASE_DIR's if it holds manage.py, else the
    checkout root, else the first manage.py one level down."""
    candidates = []
    base = getattr(settings, "BASE_DIR", None)
    if base:
        candidates.append(Path(base).resolve())
    candidates.append(Path.cwd().resolve())
    candidates.append(repo)
    for folder in candidates:
        if (folder / "manage.py").is_file() and _inside(folder, repo):
            return folder.relative_to(repo)
    for found in sorted(repo.glob("*/manage.py")):
        return found.parent.relative_to(repo)
    return Path(".")


def current_layout() -> Layout:
    """The layout of the project this process runs (REPO_DIR and ZERODEPLOY["LAYOUT"])."""
    return detect(app_settings.repo_dir, app_settings.LAYOUT)
