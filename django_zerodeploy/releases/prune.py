"""KEEP_RELEASES: remove the oldest releases, and the venvs no kept release uses.

Never removed: the current release, the previous one (the rollback target), and the venvs
either of them runs with. A release directory without complete metadata that is neither current
nor previous is a build a kill cut short: it goes too. Links inside a release (``.venv``, the
shared paths) are removed as links; nothing is followed into ``shared/`` or a kept venv.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from . import venvs
from .layout import NAME_RE, Release, ReleasesRoot


@dataclass
class Pruned:
    releases: list[str] = field(default_factory=list)
    venvs: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if not self.releases and not self.venvs:
            return "nothing to prune"
        parts = []
        if self.releases:
            parts.append(f"{len(self.releases)} release(s): {', '.join(self.releases)}")
        if self.venvs:
            parts.append(f"{len(self.venvs)} venv(s): {', '.join(self.venvs)}")
        return "removed " + "; ".join(parts)


def remove_incomplete(root: ReleasesRoot) -> list[str]:
    """Releases a failed or killed build left (never current or previous); their names."""
    removed = []
    for release in incomplete(root):
        shutil.rmtree(release.path, ignore_errors=True)
        root.metadata_path(release.name).unlink(missing_ok=True)
        removed.append(release.name)
    return removed


def incomplete(root: ReleasesRoot) -> list[Release]:
    """Releases not built to the end that are neither current nor previous."""
    protected = {r.name for r in (root.current(), root.previous()) if r is not None}
    return [r for r in root.releases() if r.name not in protected and not root.is_complete(r.name)]


def select(
    root: ReleasesRoot,
    keep: int,
    *,
    adding: Release | None = None,
    adding_venv: str = "",
    serving: Release | None = None,
) -> Pruned:
    """What ``prune`` removes now, or (``adding``) once ``adding``, with the venv
    ``adding_venv``, is built and switched to, ``serving`` (default: current) becoming
    previous: what a dry run of a deploy reports."""
    current, previous = root.current(), root.previous()
    releases = root.releases()
    complete = [r for r in releases if root.is_complete(r.name)]
    if adding is not None:
        releases, complete = [*releases, adding], [*complete, adding]
        current, previous = adding, serving or current
    protected = {r.name for r in (current, previous) if r is not None}
    kept = {r.name for r in complete[-max(keep, 1) :]} | protected
    used = {adding_venv} if adding is not None else set()
    used |= {k for r in releases if r.name in kept and r != adding and (k := r.venv_key)}
    found = sorted(root.venvs_dir.iterdir()) if root.venvs_dir.is_dir() else []
    return Pruned(
        [r.name for r in releases if r.name not in kept],
        [p.name for p in found if p.name not in used and p.is_dir() and not p.is_symlink()],
    )


def prune(root: ReleasesRoot, keep: int) -> Pruned:
    """Keep the ``keep`` newest complete releases (at least current and previous)."""
    pruned = select(root, keep)
    for name in pruned.releases:
        release = root.release(name)
        root.write_metadata(release.name, complete=False)  # never taken as whole again
        shutil.rmtree(release.path, ignore_errors=True)
        root.metadata_path(release.name).unlink(missing_ok=True)
    for name in pruned.venvs:
        venvs.remove(root.venvs_dir / name)
    for meta in root.state_dir.glob("*.json") if root.state_dir.is_dir() else []:
        if NAME_RE.match(meta.stem) and not (root.releases_dir / meta.stem).exists():
            meta.unlink(missing_ok=True)  # metadata of a release removed by hand
    return pruned
