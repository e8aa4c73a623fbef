"""The live checkout's git-ignored state, linked into the release's worktree.

What is checked is what will serve: the preflight imports the new release from a worktree beside
the live checkout, and a project reads state relative to its own directory (``BASE_DIR /
"db.sqlite3"``, a ``.env`` beside manage.py, ``local_settings.py``, ``MEDIA_ROOT`` and
``STATIC_ROOT`` inside the checkout, the virtualenv in ``venv/``). Each such path is linked into
the worktree (Capistrano calls them linked files and linked dirs), so the preflight opens the same
database, reads the same ``.env`` and writes static files where the workers read them.

The paths: what git ignores in the live checkout (``git ls-files --others --ignored
--exclude-standard --directory``), plus the SQLite files, ``MEDIA_ROOT`` and ``STATIC_ROOT`` the
settings name inside the checkout, plus ``ZERODEPLOY['SHARED_PATHS']``, minus
``ZERODEPLOY['SHARED_PATHS_EXCLUDE']`` and bytecode. SQLite resolves a symlink before it opens a
database, so its journal and WAL files are made next to the real file, never in the worktree.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from django.conf import settings

from . import exit_codes
from .conf import app_settings
from .exit_codes import CommandFailure
from .git import Git, GitError

# Never linked: per-tree bytecode, and SQLite's own side files (SQLite puts them next to the
# resolved database file by itself; a link to a WAL file that is later deleted would dangle).
_NEVER = ("__pycache__",)
_NEVER_SUFFIXES = (".pyc", ".pyo", "-wal", "-shm", "-journal")


@dataclass
class SharedPaths:
    """Paths relative to the checkout, and why each is shared."""

    paths: dict[str, str] = field(default_factory=dict)  # path -> "git-ignored", "DATABASES…"

    def add(self, rel: str, why: str) -> None:
        rel = str(PurePosixPath(rel.rstrip("/")))
        if rel in (".", "") or _never(rel) or self.covers(rel):
            return
        for other in [p for p in self.paths if _under(p, rel)]:
            del self.paths[other]  # a linked parent covers its children
        self.paths[rel] = why

    def covers(self, rel: str) -> bool:
        return any(rel == p or _under(rel, p) for p in self.paths)


def _under(rel: str, parent: str) -> bool:
    return rel.startswith(parent.rstrip("/") + "/")


def _never(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return any(p in _NEVER for p in parts) or rel.endswith(_NEVER_SUFFIXES)


def settings_paths(live: Path) -> dict[str, str]:
    """State the live settings keep inside the checkout: {relative path: setting name}."""
    found: dict[str, str] = {}
    for alias, config in settings.DATABASES.items():
        name = str(config.get("NAME") or "")
        if "sqlite" in str(config.get("ENGINE", "")) and name and not _in_memory(name):
            found.setdefault(_relative(live, name) or "", f"DATABASES[{alias!r}]['NAME']")
    for setting in ("MEDIA_ROOT", "STATIC_ROOT"):
        value = getattr(settings, setting, None)
        if value:
            found.setdefault(_relative(live, value) or "", setting)
    found.pop("", None)
    return found


def _in_memory(name: str) -> bool:
    return name.startswith((":memory:", "file::memory:")) or "mode=memory" in name


def _relative(live: Path, path: str | os.PathLike[str]) -> str | None:
    """``path`` relative to the live checkout, or None when it lies outside."""
    try:
        return str(Path(os.path.abspath(path)).relative_to(live))
    except ValueError:
        with contextlib.suppress(ValueError, OSError):
            return str(Path(path).resolve().relative_to(live.resolve()))
    return None


def shared_paths(git: Git, live: Path) -> SharedPaths:
    """Every path of the live checkout to link into a worktree (see the module docstring)."""
    shared = SharedPaths()
    excluded = [str(PurePosixPath(p.rstrip("/"))) for p in app_settings.SHARED_PATHS_EXCLUDE]
    candidates = [(rel, setting) for rel, setting in settings_paths(live).items()]
    candidates += [(rel, "SHARED_PATHS") for rel in app_settings.SHARED_PATHS]
    try:
        listed = git.out(
            "ls-files", "--others", "--ignored", "--exclude-standard", "--directory", "-z"
        )
    except GitError:
        listed = ""
    candidates += [(rel, "git-ignored") for rel in listed.split("\0") if rel]
    for rel, why in candidates:
        clean = str(PurePosixPath(rel.rstrip("/")))
        if any(clean == e or _under(clean, e) for e in excluded):
            continue
        shared.add(clean, why)
    return shared


def refuse_tracked(git: Git, live: Path, shared: SharedPaths) -> None:
    """A database, media or static root that git tracks would be replaced by the checkout."""
    for rel, why in shared.paths.items():
        if why in ("git-ignored", "SHARED_PATHS"):
            continue
        if git.run("ls-files", "--error-unmatch", "--", rel, check=False).ok:
            raise CommandFailure(
                f"{why} ({live / rel}) is tracked by git: a deploy would replace it with the "
                f"release's copy. Stop tracking it: git rm -r --cached {rel}, and add it to "
                ".gitignore.",
                exit_codes.USAGE,
            )


def link_into(worktree: Path, live: Path, shared: SharedPaths) -> list[str]:
    """Link each shared path of ``live`` into ``worktree``; returns the lines for the record.
    A path the release itself holds cannot be the live one: refuse, naming it."""
    lines = []
    for rel, why in sorted(shared.paths.items()):
        source, target = live / rel, worktree / rel
        if os.path.lexists(target):
            raise CommandFailure(
                f"{rel} is live state in {live} ({why}), but the release tracks a file at that "
                f"path: the preflight could not see the live one. Stop tracking it in the "
                f"release (git rm -r --cached {rel}), or add {rel!r} to "
                "ZERODEPLOY['SHARED_PATHS_EXCLUDE'] if the release's copy is the one to use.",
                exit_codes.USAGE,
            )
        if why in ("MEDIA_ROOT", "STATIC_ROOT") and not os.path.lexists(source):
            source.mkdir(parents=True, exist_ok=True)  # the workers would create it there too
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(source, target)
        lines.append(f"{rel} ({why})")
    return lines


def unlink_from(worktree: Path) -> None:
    """Remove the links to live state from a worktree before it is deleted, so that nothing
    that removes the worktree can ever reach through them into the live checkout."""
    for folder, dirs, files in os.walk(worktree):
        links = [name for name in [*dirs, *files] if (Path(folder) / name).is_symlink()]
        for name in links:
            with contextlib.suppress(OSError):
                (Path(folder) / name).unlink()
        dirs[:] = [d for d in dirs if d != ".git" and d not in links]
