"""A thin wrapper over the git command line. Refs from users are validated and never placed
where git could read them as options."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import proc

_SHA = re.compile(r"^[0-9a-f]{40}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._/@+-]+$")


class GitError(Exception):
    """A git command failed; the message is one readable sentence."""


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:10]


def is_sha(value: object) -> bool:
    """A full 40-hex commit id (lower case): the only form taken from reports and records."""
    return isinstance(value, str) and bool(_SHA.fullmatch(value))


def _revision(rev: str) -> str:
    """A revision for log/diff/merge-base: refused when git could read it as an option (the
    calls also pass ``--end-of-options``; this keeps the message readable)."""
    if not rev or rev.startswith("-"):
        raise GitError(f"{rev!r} is not a revision.")
    return rev


def validate_ref(ref: str) -> str:
    """Reject refs that could be read as an option or that git could never accept."""
    if not ref or ref.startswith("-") or not _SAFE_NAME.fullmatch(ref) or ".." in ref:
        raise GitError(
            f"{ref!r} is not a valid git ref: use a branch, tag or commit name "
            "(letters, digits and . _ / @ + -, not starting with '-')."
        )
    return ref


class Git:
    """git in one checkout (or worktree)."""

    def __init__(self, repo_dir: str | os.PathLike[str], timeout: float = 300) -> None:
        self.repo_dir = Path(repo_dir)
        self.timeout = timeout

    def run(self, *args: str, check: bool = True, timeout: float | None = None) -> proc.ProcResult:
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
        result = proc.run(
            ["git", "-C", str(self.repo_dir), *args], env=env, timeout=timeout or self.timeout
        )
        if check and not result.ok:
            raise GitError(f"git {args[0]} failed: {result.last_lines(3) or result.returncode}")
        return result

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.strip()

    # -- reading ---------------------------------------------------------------------------
    def toplevel(self) -> Path:
        return Path(self.out("rev-parse", "--show-toplevel"))

    def head(self) -> str:
        return self.out("rev-parse", "--verify", "HEAD")

    def current_branch(self) -> str | None:
        result = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return result.stdout.strip() or None

    def upstream(self, branch: str) -> tuple[str, str] | None:
        """(remote, remote branch) that ``branch`` tracks, or None."""
        remote = self.run("config", "--get", f"branch.{branch}.remote", check=False).stdout.strip()
        merge = self.run("config", "--get", f"branch.{branch}.merge", check=False).stdout.strip()
        if not remote or not merge:
            return None
        return remote, merge.removeprefix("refs/heads/")

    def modified_tracked_files(self) -> list[str]:
        out = self.run("status", "--porcelain", "--untracked-files=no").stdout
        return [line[3:] for line in out.splitlines() if line.strip()]

    def resolve(self, ref: str) -> str:
        """The commit a ref names; raises GitError with a clear message if there is none."""
        validate_ref(ref)
        result = self.run(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False
        )
        sha = result.stdout.strip()
        if not result.ok or not _SHA.match(sha):
            raise GitError(f"{ref!r} does not name a commit in {self.repo_dir}.")
        return sha

    # Revisions below may come from what workers or HEALTHZ_URL report, or from records: they
    # are checked and placed after --end-of-options, where git never reads an option.
    def commit(self, sha: str) -> Commit:
        subject = self.out("log", "-1", "--format=%s", "--end-of-options", _revision(sha), "--")
        return Commit(sha, subject)

    def log(self, old: str | None, new: str, limit: int = 200) -> list[Commit]:
        """Commits in ``new`` that are not in ``old``, newest first."""
        spec = f"{_revision(old)}..{_revision(new)}" if old else _revision(new)
        out = self.out(
            "log", f"--max-count={limit}", "--format=%H%x00%s", "--end-of-options", spec, "--"
        )
        return [Commit(*line.split("\x00", 1)) for line in out.splitlines() if line]

    def changed_files(self, old: str, new: str) -> list[str]:
        out = self.out(
            "diff",
            "--name-only",
            "--no-renames",
            "--end-of-options",
            _revision(old),
            _revision(new),
            "--",
        )
        return [line for line in out.splitlines() if line]

    def is_ancestor(self, old: str, new: str) -> bool:
        result = self.run(
            "merge-base",
            "--is-ancestor",
            "--end-of-options",
            _revision(old),
            _revision(new),
            check=False,
        )
        return result.returncode == 0

    # -- changing --------------------------------------------------------------------------
    def fetch(self, remote: str) -> None:
        validate_ref(remote)
        self.run("fetch", "--quiet", "--prune", "--tags", "--force", remote)

    def worktree_add(self, path: Path, sha: str) -> None:
        self.run("worktree", "add", "--detach", "--force", "--", str(path), _revision(sha))

    def worktree_remove(self, path: Path) -> None:
        self.run("worktree", "remove", "--force", str(path), check=False)
        self.run("worktree", "prune", check=False)

    def clone_release(self, dest: Path, sha: str, branch: str | None) -> Git:
        """A standalone checkout of ``sha`` at ``dest``: cloned from this repository with its
        objects hard-linked (``--local``, no alternates: it survives the removal of this one),
        with this repository's remotes, their remote-tracking refs and the branch's upstream,
        so that the release fetches from where this checkout did."""
        Git(dest.parent, self.timeout).run(
            "clone", "--quiet", "--local", "--no-checkout", "--", str(self.repo_dir), str(dest)
        )
        new = Git(dest, self.timeout)
        remotes = self.out("remote").split()
        if "origin" not in remotes:
            new.run("remote", "remove", "origin")
        for remote in remotes:
            url = self.out("remote", "get-url", "--", remote)
            verb = "set-url" if remote == "origin" else "add"
            new.run("remote", verb, "--", remote, url)
            new.run(
                "fetch", "--quiet", "--no-tags", "--", str(self.repo_dir),
                f"+refs/remotes/{remote}/*:refs/remotes/{remote}/*",
            )  # fmt: skip
        if branch:
            validate_ref(branch)
            new.run("checkout", "--quiet", "-B", branch, _revision(sha), "--")
            upstream = self.upstream(branch)
            if upstream:
                new.run("config", f"branch.{branch}.remote", upstream[0])
                new.run("config", f"branch.{branch}.merge", f"refs/heads/{upstream[1]}")
        else:
            new.run("checkout", "--quiet", "--detach", _revision(sha), "--")
        return new

    def move_branch_to(self, sha: str) -> None:
        """Move the checked-out branch (or a detached HEAD) to ``sha``, keeping the branch
        checked out so that a later manual ``git pull`` still works."""
        self.run("reset", "--keep", _revision(sha), "--")


def read_head_without_git(repo_dir: Path) -> str | None:
    """HEAD's commit read from .git files, for machines where git is not on PATH."""
    git_dir = repo_dir / ".git"
    if git_dir.is_file():  # a worktree: "gitdir: /path"
        text = git_dir.read_text().strip()
        if not text.startswith("gitdir:"):
            return None
        git_dir = (repo_dir / text.split(":", 1)[1].strip()).resolve()
    head_file = git_dir / "HEAD"
    if not head_file.exists():
        return None
    head = head_file.read_text().strip()
    if _SHA.match(head):
        return head
    if not head.startswith("ref:"):
        return None
    ref = head.split(":", 1)[1].strip()
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.exists():
        common = (git_dir / commondir.read_text().strip()).resolve()
    for base in (git_dir, common):
        ref_file = base / ref
        if ref_file.exists():
            return ref_file.read_text().strip()
    packed = common / "packed-refs"
    if packed.exists():
        for line in packed.read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split(" ", 1)[0]
    return None
