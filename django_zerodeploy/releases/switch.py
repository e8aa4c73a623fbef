"""Switch ``ROOT/current`` in one step.

A new symlink is made under a temporary name and renamed over the old one (``rename(2)`` is
atomic: a reader sees the old target or the new, never no link), as ``mv -T`` does; never rm
then ln. ``ROOT/previous`` is switched the same way, first, to what ``current`` pointed at, so
that a kill between the two renames leaves ``current`` on a complete release and ``previous``
naming the release to roll back to.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from .layout import Release, ReleasesRoot


def atomic_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` (a path relative to the link's folder) atomically."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(link.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Switched:
    """``current`` went from ``old`` to ``new``."""

    old: Release | None
    new: Release


class NotComplete(Exception):
    """Refused: only a release built to the end may become current."""


def switch(root: ReleasesRoot, new: Release, *, previous: Release | None = None) -> Switched:
    """Make ``new`` current. ``previous`` becomes what ``ROOT/previous`` names (default: the
    release current until now). ``ROOT/previous`` never names the current release: a rollback
    to it would go nowhere, so when there is no other to name it is removed."""
    if not root.is_complete(new.name):
        raise NotComplete(f"release {new.name} is not complete: it cannot become current")
    old = root.current()
    keep = previous if previous is not None else old
    if keep is not None and keep.name != new.name:
        atomic_symlink(root.previous_link, f"releases/{keep.name}")
    elif root.previous() == new:
        root.previous_link.unlink(missing_ok=True)
    atomic_symlink(root.current_link, f"releases/{new.name}")
    return Switched(old, new)


def clean_temporary_links(root: ReleasesRoot) -> None:
    """Temporary links a kill left behind between symlink() and rename()."""
    for link in root.path.glob(".*.tmp-*"):
        if link.is_symlink():
            link.unlink(missing_ok=True)
