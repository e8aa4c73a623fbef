"""git.Git against real repositories: an origin, a clone, worktrees, packed refs; refs from
users are validated before git sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from django_zerodeploy.git import Commit, Git, GitError, is_sha, read_head_without_git, validate_ref
from tests.support.repos import make_repo
from tests.support.site import git


@pytest.fixture
def repo(tmp_path) -> tuple[Path, list[str]]:
    path = tmp_path / "repo"
    return path, make_repo(path)


@pytest.fixture
def clone(tmp_path, repo) -> tuple[Path, Path]:
    """A bare origin made from ``repo`` and a clone of it that tracks origin/main."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo[0]), str(origin))
    work = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(work))
    return origin, work


# -- validate_ref ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ref", ["main", "v1.2.3", "feature/login", "origin/main", "release@2026", "a1b2c3d", "HEAD"]
)
def test_validate_ref_accepts_names(ref):
    assert validate_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "-x",
        "--upload-pack=touch /tmp/x",
        "main..evil",
        "a b",
        "main;id",
        "$(id)",
        "ref\nx",
        "a~1",
        "main\n",
    ],
)
def test_validate_ref_rejects_options_and_odd_names(ref):
    with pytest.raises(GitError, match="is not a valid git ref"):
        validate_ref(ref)


# -- reading ---------------------------------------------------------------------------------
def test_head_resolve_commit_and_toplevel(repo):
    path, shas = repo
    g = Git(path)
    assert g.head() == shas[-1]
    assert g.resolve("main") == shas[-1]
    assert g.resolve(shas[0][:8]) == shas[0]
    git(path, "tag", "-a", "v1", "-m", "first", shas[0])
    assert g.resolve("v1") == shas[0]  # an annotated tag resolves to its commit
    assert g.commit(shas[1]) == Commit(shas[1], "Commit 2")
    assert g.commit(shas[1]).short == shas[1][:10]
    (path / "sub").mkdir()
    assert Git(path / "sub").toplevel() == path.resolve()


def test_resolve_unknown_or_dangerous_ref(repo, tmp_path):
    g = Git(repo[0])
    with pytest.raises(GitError, match="'nope' does not name a commit"):
        g.resolve("nope")
    with pytest.raises(GitError, match="not a valid git ref"):
        g.resolve("--output=" + str(tmp_path / "written"))
    assert not (tmp_path / "written").exists()


def test_branch_and_upstream(clone, repo):
    _, work = clone
    g = Git(work)
    assert g.current_branch() == "main"
    assert g.upstream("main") == ("origin", "main")
    assert Git(repo[0]).upstream("main") is None  # no remote at all
    git(work, "checkout", "-q", "--detach")
    assert g.current_branch() is None


def test_modified_tracked_files_ignores_untracked(repo):
    path, _ = repo
    g = Git(path)
    assert g.modified_tracked_files() == []
    (path / "untracked.txt").write_text("new")
    assert g.modified_tracked_files() == []
    (path / "a.txt").write_text("changed on the server\n")
    (path / "b.txt").unlink()
    assert sorted(g.modified_tracked_files()) == ["a.txt", "b.txt"]


def test_log_changed_files_and_ancestry(repo):
    path, shas = repo
    g = Git(path)
    assert [c.sha for c in g.log(shas[0], shas[2])] == [shas[2], shas[1]]
    assert [c.subject for c in g.log(None, shas[2])] == ["Commit 3", "Commit 2", "Commit 1"]
    assert len(g.log(None, shas[2], limit=1)) == 1
    assert g.log(shas[2], shas[2]) == []
    assert g.changed_files(shas[0], shas[1]) == ["a.txt", "b.txt"]
    assert g.changed_files(shas[1], shas[2]) == ["a.txt"]
    assert g.is_ancestor(shas[0], shas[2]) and not g.is_ancestor(shas[2], shas[0])


def test_failed_command_is_one_readable_sentence(repo):
    with pytest.raises(GitError) as info:
        Git(repo[0]).run("cat-file", "-p", "0" * 40)
    message = str(info.value)
    assert message.startswith("git cat-file failed:") and "Traceback" not in message
    assert Git(repo[0]).run("cat-file", "-p", "0" * 40, check=False).returncode != 0


def test_not_a_repository(tmp_path):
    with pytest.raises(GitError, match="git rev-parse failed"):
        Git(tmp_path).head()


# -- changing --------------------------------------------------------------------------------
def test_fetch_sees_new_pushes(clone, tmp_path):
    origin, work = clone
    pusher = tmp_path / "pusher"
    git(tmp_path, "clone", "-q", str(origin), str(pusher))
    git(pusher, "config", "user.email", "p@example.com")
    git(pusher, "config", "user.name", "P")
    (pusher / "c.txt").write_text("c")
    git(pusher, "add", "-A")
    git(pusher, "commit", "-q", "-m", "Pushed")
    git(pusher, "tag", "v9")
    git(pusher, "push", "-q", "origin", "HEAD:main", "v9")
    new = git(pusher, "rev-parse", "HEAD")
    g = Git(work)
    with pytest.raises(GitError):
        g.resolve("origin/main^{commit}")  # not a valid name for users: braces
    assert g.resolve("origin/main") != new
    g.fetch("origin")
    assert g.resolve("origin/main") == new and g.resolve("v9") == new
    assert g.head() != new  # fetching never moves the live tree
    with pytest.raises(GitError, match="not a valid git ref"):
        g.fetch("--upload-pack=touch")


def test_worktree_add_and_remove(repo, tmp_path):
    path, shas = repo
    g = Git(path)
    tree = tmp_path / "prepared"
    g.worktree_add(tree, shas[0])
    assert (tree / "a.txt").read_text() == "version 1\n" and not (tree / "b.txt").exists()
    assert Git(tree).head() == shas[0] and Git(tree).current_branch() is None
    assert read_head_without_git(tree) == shas[0]
    assert g.head() == shas[-1]  # the live tree did not move
    g.worktree_remove(tree)
    assert not tree.exists()
    assert str(tree) not in g.out("worktree", "list")


def test_move_branch_to_keeps_the_branch_checked_out(clone, repo):
    _, work = clone
    _, shas = repo
    g = Git(work)
    g.move_branch_to(shas[0])
    assert g.head() == shas[0] and g.current_branch() == "main"
    assert (work / "a.txt").read_text() == "version 1\n"
    assert g.upstream("main") == ("origin", "main")
    g.move_branch_to(shas[-1])
    assert g.head() == shas[-1] and (work / "b.txt").exists()


def test_move_branch_refuses_to_overwrite_local_changes(repo):
    path, shas = repo
    (path / "a.txt").write_text("edited by hand on the server\n")
    with pytest.raises(GitError, match="git reset failed"):
        Git(path).move_branch_to(shas[0])
    assert (path / "a.txt").read_text() == "edited by hand on the server\n"
    assert Git(path).head() == shas[-1]


# -- read_head_without_git ----------------------------------------------------------------------
def test_read_head_on_a_branch_detached_and_packed(repo):
    path, shas = repo
    assert read_head_without_git(path) == shas[-1]
    git(path, "pack-refs", "--all", "--prune")
    assert not (path / ".git" / "refs" / "heads" / "main").exists()
    assert read_head_without_git(path) == shas[-1]
    git(path, "checkout", "-q", shas[0])
    assert read_head_without_git(path) == shas[0]


def test_read_head_in_a_worktree_on_a_branch(repo, tmp_path):
    path, shas = repo
    git(path, "branch", "side", shas[1])
    tree = tmp_path / "side-tree"
    git(path, "worktree", "add", "-q", str(tree), "side")
    assert (tree / ".git").is_file()
    assert read_head_without_git(tree) == shas[1]
    git(path, "pack-refs", "--all", "--prune")  # the branch now lives in the common packed-refs
    assert read_head_without_git(tree) == shas[1]


def test_read_head_when_there_is_nothing_to_read(tmp_path):
    assert read_head_without_git(tmp_path) is None
    (tmp_path / ".git").write_text("not a gitdir line\n")
    assert read_head_without_git(tmp_path) is None
    empty = tmp_path / "empty"
    git(tmp_path, "init", "-q", str(empty))
    assert read_head_without_git(empty) is None  # unborn branch: no commit yet


# -- revisions are never options ----------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda g, opt, sha: g.changed_files(opt, sha),
        lambda g, opt, sha: g.changed_files(sha, opt),
        lambda g, opt, sha: g.log(opt, sha),
        lambda g, opt, sha: g.log(None, opt),
        lambda g, opt, sha: g.commit(opt),
        lambda g, opt, sha: g.is_ancestor(opt, sha),
    ],
)
def test_an_option_looking_revision_is_refused_and_never_read_as_an_option(repo, tmp_path, call):
    path, shas = repo
    written = tmp_path / "written-by-git"
    with pytest.raises(GitError):
        call(Git(path), f"--output={written}", shas[1])
    assert not written.exists()


def test_git_reads_revisions_after_end_of_options(repo, tmp_path, monkeypatch):
    """Even past the wrapper's own check, git is told that no option follows."""
    path, shas = repo
    monkeypatch.setattr("django_zerodeploy.git._revision", lambda rev: rev)
    written = tmp_path / "written-by-git"
    with pytest.raises(GitError):
        Git(path).changed_files(f"--output={written}", shas[1])
    assert not written.exists()
    assert Git(path).changed_files(shas[1], shas[2]) == ["a.txt"]


def test_is_sha_takes_full_lowercase_commit_ids_only():
    assert is_sha("a" * 40)
    assert not is_sha("A" * 40) and not is_sha("a" * 39) and not is_sha("--output=x")
    assert not is_sha(None) and not is_sha(["a" * 40])
