"""``ROOT/shared``: the in-place layout's shared-path rules (``shared_paths``), applied to
releases. What git ignores, the SQLite/MEDIA_ROOT/STATIC_ROOT paths inside the checkout and
``SHARED_PATHS`` (minus ``SHARED_PATHS_EXCLUDE``) live once in ``ROOT/shared`` and are linked
into every release. A virtualenv inside the checkout is the one exception: each release has its
own ``.venv`` link instead. The list is kept in ``ROOT/.zerodeploy/shared.json`` so that every
later release links the same paths.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..git import Git
from ..osutil import write_json_atomic
from ..shared_paths import SharedPaths, link_into, shared_paths
from .layout import VENV_LINK, ReleasesRoot


def release_shared_paths(git: Git, checkout: Path) -> tuple[dict[str, str], list[str]]:
    """{path: why} to share from ``checkout``, and lines naming what is not shared and why."""
    found = shared_paths(git, checkout)
    paths, skipped = {}, []
    for rel, why in found.paths.items():
        if (checkout / rel / "pyvenv.cfg").is_file() or rel == VENV_LINK:
            skipped.append(f"{rel} (a virtualenv: each release links its own .venv)")
            continue
        paths[rel] = why
    return paths, skipped


def link_shared(release: Path, shared_dir: Path, paths: dict[str, str]) -> list[str]:
    """Link each shared path into ``release`` (refused, naming it, if the release tracks it),
    and tell the release's git to ignore the links and ``.venv`` (in ``.git/info/exclude``,
    not in the tree), so that the release holds no untracked file."""
    lines = link_into(release, shared_dir, SharedPaths(dict(paths)))
    exclude = release / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    anchored = [f"/{rel}" for rel in sorted({*paths, VENV_LINK})]
    with exclude.open("a") as handle:
        handle.write(
            "\n# linked by django-zerodeploy (releases layout)\n" + "\n".join(anchored) + "\n"
        )
    return lines


def save(root: ReleasesRoot, paths: dict[str, str]) -> None:
    root.state_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root.state_dir / "shared.json", paths)


def load(root: ReleasesRoot) -> dict[str, str]:
    try:
        data = json.loads((root.state_dir / "shared.json").read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
