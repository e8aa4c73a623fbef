"""boot_release(): the release this process loaded, pinned at boot, whatever the checkout holds
later. RELEASE_ID, then a REVISION file, then git's HEAD (read without running git)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.test import override_settings

from django_zerodeploy.release import boot_release
from tests.support.site import git


@pytest.fixture(autouse=True)
def fresh_boot_release():
    """boot_release is cached per process; every test here starts and ends uncached."""
    boot_release.cache_clear()
    yield
    boot_release.cache_clear()


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "checkout"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    (path / "x.txt").write_text("1")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "one")
    return path


def test_git_head_of_the_checkout(repo):
    with override_settings(ZERODEPLOY={"REPO_DIR": str(repo)}):
        assert boot_release() == git(repo, "rev-parse", "HEAD")


def test_pinned_at_boot_when_the_checkout_moves(repo):
    with override_settings(ZERODEPLOY={"REPO_DIR": str(repo)}):
        booted = boot_release()
        (repo / "x.txt").write_text("2")
        git(repo, "commit", "-q", "-am", "two")
        assert git(repo, "rev-parse", "HEAD") != booted
        assert boot_release() == booted


def test_release_id_setting_wins(repo):
    (repo / "REVISION").write_text("from-file\n")
    with override_settings(ZERODEPLOY={"REPO_DIR": str(repo), "RELEASE_ID": "build-42"}):
        assert boot_release() == "build-42"


def test_revision_file_where_there_is_no_git(tmp_path):
    (tmp_path / "REVISION").write_text("  3f2a9c1  \n")
    with override_settings(ZERODEPLOY={"REPO_DIR": str(tmp_path)}):
        assert boot_release() == "3f2a9c1"


def test_revision_file_in_base_dir(tmp_path):
    repo_dir, base = tmp_path / "repo", tmp_path / "base"
    repo_dir.mkdir()
    base.mkdir()
    (base / "REVISION").write_text("from-base-dir\n")
    with override_settings(BASE_DIR=base, ZERODEPLOY={"REPO_DIR": str(repo_dir)}):
        assert boot_release() == "from-base-dir"


def test_unknown_release_is_empty(tmp_path):
    with override_settings(BASE_DIR=tmp_path, ZERODEPLOY={"REPO_DIR": str(tmp_path)}):
        assert boot_release() == ""


def test_git_not_needed_on_path(repo, tmp_path):
    """Servers without a git binary still know their release: HEAD is read from .git files."""
    script = (
        "import django; from django.conf import settings;"
        f"settings.configure(ZERODEPLOY={{'REPO_DIR': {str(repo)!r}}});"
        "django.setup();"
        "from django_zerodeploy.release import boot_release; print(boot_release())"
    )
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PATH": str(empty_bin), "PYTHONPATH": ":".join(sys.path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == git(repo, "rev-parse", "HEAD")
