"""Small real git repositories for tests of what reads them (git.Git, the fetch step)."""

from __future__ import annotations

from pathlib import Path

from tests.support.site import git


def make_repo(path: Path, commits: int = 3) -> list[str]:
    """A repository on branch main with ``commits`` commits touching a.txt (and b.txt once)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    shas = []
    for i in range(1, commits + 1):
        (path / "a.txt").write_text(f"version {i}\n")
        if i == 2:
            (path / "b.txt").write_text("b\n")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"Commit {i}")
        shas.append(git(path, "rev-parse", "HEAD"))
    return shas
