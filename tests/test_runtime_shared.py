"""A runtime directory shared between the user Gunicorn runs as and the deploying user: which
ones the ownership check accepts (group-shared with us, never writable by others), and that the
folders and files made inside keep the group's access whoever makes them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from django_zerodeploy import runtime
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.osutil import runtime_subdir, write_json_atomic

OTHER_UID = 65534  # nobody: a user that is not us
NOT_OUR_GID = 65534  # nogroup


def folder(tmp_path: Path, mode: int, uid: int, gid: int) -> Path:
    path = tmp_path / f"rt-{mode:o}-{uid}-{gid}"
    path.mkdir()
    os.chown(path, uid, gid)
    path.chmod(mode)
    return path


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@needs_root
def test_a_folder_group_shared_with_us_is_accepted_whoever_owns_it(tmp_path):
    path = folder(tmp_path, 0o2770, OTHER_UID, os.getgid())
    runtime._check_owned(path, shared=True)  # RuntimeDirectory= of User=www-data, we in its group


@needs_root
@pytest.mark.parametrize(
    ("mode", "uid", "gid", "shared", "problem"),
    [
        (0o2777, "other", "ours", True, "group or other users can write it (mode 2777)"),
        (0o0770, "other", "not ours", True, "it is owned by"),
        (0o0750, "other", "ours", True, "it is owned by"),  # we could not write it
        (0o0770, "other", "ours", True, "it is owned by"),  # not setgid: not deliberately shared
        (0o0770, "us", "ours", False, "group or other users can write it"),  # the default dir
    ],
)
def test_what_is_not_safe_to_share_is_refused(tmp_path, mode, uid, gid, shared, problem):
    path = folder(
        tmp_path,
        mode,
        OTHER_UID if uid == "other" else os.getuid(),
        os.getgid() if gid == "ours" else NOT_OUR_GID,
    )
    with pytest.raises(CommandFailure) as refused:
        runtime._check_owned(path, shared=shared)
    assert problem in refused.value.message and refused.value.exit_code == 2


def test_folders_and_files_inside_keep_the_group_access(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2770)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    old = os.umask(0o077)  # whatever the umask of the process that makes them
    try:
        workers = runtime_subdir(shared, "workers")
        alone = runtime_subdir(private, "workers")
        write_json_atomic(workers / "1.json", {"pid": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(workers.stat().st_mode) == 0o2770
    assert stat.S_IMODE(alone.stat().st_mode) == 0o700
    assert stat.S_IMODE((workers / "1.json").stat().st_mode) == 0o640
