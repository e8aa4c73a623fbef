"""Which layout the project runs in, and the names of a releases root.

A project runs in the releases layout when its checkout is ``ROOT/releases/<name>`` and
``ROOT/current`` is a symlink; ``ZERODEPLOY["LAYOUT"]`` overrides the detection. Each release's
metadata (commit, venv key, migrations its deploy applied, complete or not) lives in
``ROOT/.zerodeploy/<name>.json``, outside the checkout, so a release tree holds only tracked
files and links.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import exit_codes
from ..exit_codes import CommandFailure
from ..osutil import write_json_atomic

RELEASES = "releases"
IN_PLACE = "in_place"
LAYOUTS = (RELEASES, IN_PLACE)

NAME_RE = re.compile(r"^(?P<stamp>\d{14})-(?P<sha>[0-9a-f]{12})$")
STAMP_FORMAT = "%Y%m%d%H%M%S"
VENV_LINK = ".venv"


def release_name(sha: str, when: datetime | None = None) -> str:
    """``<UTC timestamp>-<sha12>``: names sort in the order releases were made."""
    when = when or datetime.now(UTC)
    return f"{when.astimezone(UTC).strftime(STAMP_FORMAT)}-{sha[:12].lower()}"


@dataclass(frozen=True)
class Release:
    """One directory under ``ROOT/releases``."""

    name: str
    path: Path

    @property
    def sha12(self) -> str:
        match = NAME_RE.match(self.name)
        return match.group("sha") if match else ""

    @property
    def venv_key(self) -> str | None:
        """The venv this release runs with: the name its ``.venv`` link points at."""
        with contextlib.suppress(OSError):
            return Path(os.readlink(self.path / VENV_LINK)).name
        return None


@dataclass(frozen=True)
class ReleasesRoot:
    """``ROOT`` of the releases layout and the paths inside it."""

    path: Path

    @property
    def releases_dir(self) -> Path:
        return self.path / "releases"

    @property
    def venvs_dir(self) -> Path:
        return self.path / "venvs"

    @property
    def shared_dir(self) -> Path:
        return self.path / "shared"

    @property
    def state_dir(self) -> Path:
        return self.path / ".zerodeploy"

    @property
    def current_link(self) -> Path:
        return self.path / "current"

    @property
    def previous_link(self) -> Path:
        return self.path / "previous"

    def release(self, name: str) -> Release:
        if not NAME_RE.match(name):
            raise ValueError(f"not a release name: {name!r}")
        return Release(name, self.releases_dir / name)

    def new_release_name(self, sha: str, when: datetime | None = None) -> str:
        """A fresh name; a second release of one commit in the same second waits a second."""
        when = when or datetime.now(UTC)
        name = release_name(sha, when)
        while (self.releases_dir / name).exists() or self.metadata_path(name).exists():
            when = when.fromtimestamp(when.timestamp() + 1, UTC)
            name = release_name(sha, when)
        return name

    def releases(self) -> list[Release]:
        """Every release directory, oldest first (complete or not)."""
        if not self.releases_dir.is_dir():
            return []
        names = sorted(p.name for p in self.releases_dir.iterdir() if NAME_RE.match(p.name))
        return [Release(n, self.releases_dir / n) for n in names]

    def _linked(self, link: Path) -> Release | None:
        try:
            target = os.readlink(link)
        except OSError:
            return None
        name = Path(target).name
        return Release(name, self.releases_dir / name) if NAME_RE.match(name) else None

    def current(self) -> Release | None:
        return self._linked(self.current_link)

    def previous(self) -> Release | None:
        return self._linked(self.previous_link)

    # -- metadata ------------------------------------------------------------------------------
    def metadata_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def metadata(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads(self.metadata_path(name).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_metadata(self, name: str, **values: Any) -> dict[str, Any]:
        """Merge ``values`` into the release's metadata (written atomically)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {**self.metadata(name), **values}
        write_json_atomic(self.metadata_path(name), data)
        return data

    def is_complete(self, name: str) -> bool:
        """Built to the end: only a complete release may become ``current``."""
        return bool(self.metadata(name).get("complete")) and (self.releases_dir / name).is_dir()


@dataclass(frozen=True)
class Layout:
    """Where the project runs: ``kind`` is "releases" or "in_place"; ``root`` for releases."""

    kind: str
    root: ReleasesRoot | None = None
    release: Release | None = None

    @property
    def is_releases(self) -> bool:
        return self.kind == RELEASES


def root_of(checkout: Path) -> ReleasesRoot | None:
    """``ROOT`` when ``checkout`` is ``ROOT/releases/<name>`` and ``ROOT/current`` a link."""
    checkout = checkout.resolve()
    parent = checkout.parent
    if parent.name != "releases" or not NAME_RE.match(checkout.name):
        return None
    root = ReleasesRoot(parent.parent)
    return root if root.current_link.is_symlink() else None


def detect(checkout: Path, setting: str | None = None) -> Layout:
    """The layout of ``checkout``; ``setting`` (ZERODEPLOY["LAYOUT"]) overrides detection,
    and a "releases" setting on a checkout that is not a release is one readable refusal."""
    root = root_of(checkout)
    if setting == IN_PLACE:
        return Layout(IN_PLACE)
    if root is None:
        if setting == RELEASES:
            raise CommandFailure(
                f"ZERODEPLOY['LAYOUT'] is 'releases', but {checkout} is not ROOT/releases/<name> "
                "with a ROOT/current link: create the layout with manage.py deploy "
                "--init-releases ROOT, then run from ROOT/current.",
                exit_codes.USAGE,
            )
        return Layout(IN_PLACE)
    return Layout(RELEASES, root, root.release(checkout.resolve().name))
