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
from .layout import NAME_RE, ReleasesRoot


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
    protected = {r.name for r in (root.current(), root.previous()) if r is not None}
    removed = []
    for release in root.releases():
        if release.name not in protected and not root.is_complete(release.name):
            shutil.rmtree(release.path, ignore_errors=True)
            root.metadata_path(release.name).unlink(missing_ok=True)
            removed.append(release.name)
    return removed


def prune(root: ReleasesRoot, keep: int) -> Pruned:
    """Keep the ``keep`` newest complete releases (at least current and previous)."""
    pruned = Pruned()
    protected = {r.name for r in (root.current(), root.previous()) if r is not None}
    complete = [r for r in root.releases() if root.is_complete(r.name)]
    kept = {r.name for r in complete[-max(keep, 1) :]} | protected
    for release in root.releases():
        if release.name in kept:
            continue
        root.write_metadata(release.name, complete=False)  # never taken as whole again
        shutil.rmtree(release.path, ignore_errors=True)
        root.metadata_path(release.name).unlink(missing_ok=True)
        pruned.releases.append(release.name)
    used = {k for r in root.releases() if (k := r.venv_key)}
    if root.venvs_dir.is_dir():
        for path in sorted(root.venvs_dir.iterdir()):
            if path.name not in used and path.is_dir() and not path.is_symlink():
                venvs.remove(path)
                pruned.venvs.append(path.name)
    for meta in root.state_dir.glob("*.json") if root.state_dir.is_dir() else []:
        if NAME_RE.match(meta.stem) and not (root.releases_dir / meta.stem).exists():
            meta.unlink(missing_ok=True)  # metadata of a release removed by hand
    return pruned
