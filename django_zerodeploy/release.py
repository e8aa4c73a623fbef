"""Which release this process runs: pinned at boot so a running worker keeps reporting the
code it loaded, whatever the checkout holds later."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from django.conf import settings

from .conf import app_settings
from .git import read_head_without_git


@lru_cache(maxsize=1)
def boot_release() -> str:
    """RELEASE_ID setting, else a REVISION file, else the git HEAD at boot; '' if unknown."""
    if app_settings.RELEASE_ID:
        return app_settings.RELEASE_ID
    repo = app_settings.repo_dir
    for folder in (repo, Path(getattr(settings, "BASE_DIR", repo))):
        revision = Path(folder) / "REVISION"
        if revision.is_file():
            return revision.read_text().strip()
    return read_head_without_git(repo) or ""
