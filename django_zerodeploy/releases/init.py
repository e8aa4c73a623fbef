"""``manage.py deploy --init-releases ROOT``: the releases layout made from an in-place checkout.

The first release is a standalone clone of the checkout's ``HEAD`` (objects hard-linked, no
alternates), its venv holds the same packages as the running one (``pip freeze`` installed into
a new venv), ``shared/`` gets a **copy** of the checkout's git-ignored state (the originals stay
where they are: the in-place site keeps serving from them until Gunicorn is restarted from
``ROOT/current``), and ``current`` points at the release. Nothing in the checkout changes.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from .. import exit_codes
from ..exit_codes import CommandFailure
from ..git import Git, GitError
from . import switch, venvs
from .layout import VENV_LINK, Release, ReleasesRoot, root_of
from .shared import link_shared, release_shared_paths, save

_OURS = {"releases", "venvs", "shared", ".zerodeploy"}


@dataclass
class InitResult:
    root: ReleasesRoot
    release: Release
    venv: venvs.Built
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    gunicorn_args: list[str] = field(default_factory=list)

    def instructions(self) -> str:
        current = self.root.current_link
        exe = shlex.join([str(current / VENV_LINK / "bin" / "gunicorn"), *self.gunicorn_args])
        lines = [
            f"Releases layout ready in {self.root.path}: current -> releases/{self.release.name}",
            f"  venv {self.venv.key} ({'reused' if self.venv.reused else 'built'})",
        ]
        lines += [f"  copied to shared/: {c}" for c in self.copied] or ["  shared/: nothing"]
        lines += [f"  not shared: {s}" for s in self.skipped]
        lines += [
            "The in-place checkout is unchanged and keeps serving until Gunicorn is restarted "
            "from ROOT/current. Writes it takes until then stay in the checkout's copies.",
            "Start Gunicorn from now on as:",
            f"  cd {current} && {exe}",
            "or, in its systemd unit:",
            f"  WorkingDirectory={current}",
            f"  ExecStart={exe}",
            f"and deploy with: cd {current} && {current / VENV_LINK / 'bin' / 'python'} "
            "manage.py deploy",
        ]
        return "\n".join(lines)


def _check_root(path: Path, checkout: Path) -> ReleasesRoot:
    path = Path(os.path.abspath(path))
    problem = None
    if path == checkout or checkout in path.parents:
        problem = f"{path} is inside the checkout {checkout}: choose a directory outside it"
    elif (path / "current").is_symlink():
        problem = f"{path} is a releases layout already (it has current)"
    elif path.exists() and not path.is_dir():
        problem = f"{path} exists and is not a directory"
    elif path.is_dir() and set(os.listdir(path)) - _OURS:
        problem = f"{path} is not empty: choose a new or empty directory"
    if problem:
        raise CommandFailure(f"--init-releases: {problem}.", exit_codes.USAGE)
    return ReleasesRoot(path)


def _head(git: Git, checkout: Path) -> tuple[str, str | None]:
    try:
        head = git.head()
    except GitError as exc:
        raise CommandFailure(f"{checkout} has no commit: {exc}", exit_codes.USAGE) from None
    modified = git.modified_tracked_files()
    if modified:
        raise CommandFailure(
            f"Tracked files are modified in {checkout}: {', '.join(modified[:10])}. The first "
            "release is a checkout of HEAD: commit or restore them first.",
            exit_codes.USAGE,
        )
    return head, git.current_branch()


def copy_state(checkout: Path, shared_dir: Path, paths: dict[str, str]) -> list[str]:
    """Copy each shared path of the checkout into ``shared/`` (SQLite through its backup API,
    so the copy is consistent while the site writes); returns one line per path."""
    lines = []
    for rel, why in sorted(paths.items()):
        source, target = checkout / rel, shared_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(target):
            shutil.rmtree(
                target
            ) if target.is_dir() and not target.is_symlink() else target.unlink()
        if why.startswith("DATABASES") and source.is_file():
            _copy_sqlite(source, target)
        elif source.is_dir():
            shutil.copytree(source, target, symlinks=True)
        elif os.path.lexists(source):
            shutil.copy2(source, target, follow_symlinks=False)
        else:
            target.mkdir(parents=True)  # MEDIA_ROOT or STATIC_ROOT the site has not made yet
        lines.append(f"{rel} ({why})")
    return lines


def _copy_sqlite(source: Path, target: Path) -> None:
    with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src:
        with contextlib.closing(sqlite3.connect(target)) as dst:
            src.backup(dst)


def _gunicorn_args(checkout: Path, current: Path) -> list[str]:
    """The running master's arguments with paths into the checkout moved under current, even
    none (a bare ``gunicorn`` reads ./gunicorn.conf.py, which a ``-c`` would replace); with no
    master, none if the checkout has a gunicorn.conf.py, else a template from WSGI_APPLICATION."""
    from ..gunicorn import find_master

    try:
        args: list[str] | None = find_master().args or []
    except (CommandFailure, OSError):
        args = None
    if args is not None:
        prefix = str(checkout)
        return [current.as_posix() + a[len(prefix) :] if a.startswith(prefix) else a for a in args]
    if (checkout / "gunicorn.conf.py").is_file():
        return []
    wsgi = str(getattr(settings, "WSGI_APPLICATION", "") or "project.wsgi.application")
    module, _, name = wsgi.rpartition(".")
    return ["-c", "python:django_zerodeploy.gunicorn_conf", f"{module}:{name}"]


def init_releases(
    root_path: Path,
    *,
    checkout: Path,
    python: str,
    requirement_files: Callable[[Path], list[str]],
    echo: Callable[[str], None] = print,
    timeout: float = 900,
) -> InitResult:
    """Create the layout at ``root_path`` from ``checkout`` (see the module docstring)."""
    if root_of(checkout) is not None:
        raise CommandFailure(
            f"{checkout} is a release already: --init-releases runs in an in-place checkout.",
            exit_codes.USAGE,
        )
    root = _check_root(root_path, checkout)
    git = Git(checkout, timeout=timeout)
    head, branch = _head(git, checkout)
    paths, skipped = release_shared_paths(git, checkout)
    for folder in (root.releases_dir, root.venvs_dir, root.shared_dir, root.state_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for left in root.releases():  # an earlier --init-releases that was cut short
        shutil.rmtree(left.path, ignore_errors=True)
        root.metadata_path(left.name).unlink(missing_ok=True)
    release = root.release(root.new_release_name(head))
    root.write_metadata(release.name, sha=head, complete=False, made_by="init-releases")
    echo(f"  clone {head[:12]} into {release.path}")
    git.clone_release(release.path, head, branch)
    copied = copy_state(checkout, root.shared_dir, paths)
    save(root, paths)
    link_shared(release.path, root.shared_dir, paths)
    built = build_venv_like(root, release, python, requirement_files, echo, timeout)
    os.symlink(built.path, release.path / VENV_LINK)
    root.write_metadata(release.name, complete=True, venv=built.key)
    switch.switch(root, release)
    args = _gunicorn_args(checkout, root.current_link)
    return InitResult(root, release, built, copied, skipped, args)


def build_venv_like(
    root: ReleasesRoot,
    release: Release,
    python: str,
    requirement_files: Callable[[Path], list[str]],
    echo: Callable[[str], None],
    timeout: float,
) -> venvs.Built:
    """The release's venv with the packages ``python`` has (``pip freeze``)."""
    key = venvs.venv_key(release.path, requirement_files(release.path), venvs.python_version())
    frozen = root.state_dir / f"{release.name}-freeze.txt"
    frozen.write_text("\n".join(venvs.freeze(python, timeout=timeout)) + "\n")
    echo(f"  venv {key}: the packages of {python}")
    try:
        return venvs.ensure(root.venvs_dir, key, ["-r", str(frozen)], timeout=timeout)
    except venvs.VenvError as exc:
        raise CommandFailure(f"Cannot build the venv: {exc.message}", exit_codes.FAILED) from None


__all__: list[Any] = ["InitResult", "copy_state", "init_releases"]
