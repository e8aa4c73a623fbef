"""The runtime directory: where the processes of one site (deploys, Gunicorn and its workers,
the qcluster, ``healthz --drain``) meet: the deploy and reload locks, the workers' readiness
reports, the masters' facts, the drain flag, the preflight worktrees.

Every one of those processes must compute the same path, so the default depends only on the
checkout and the OS user, never on session variables (``XDG_RUNTIME_DIR`` is set in an SSH
login and not under systemd; ``TMPDIR`` is per shell). What can still make them disagree (a
service with a private ``/tmp``, a configured path inside a login session's directory) is
reported by a system check (``problems``).

The rules of where it is and whether it can be trusted live here: the default path, the one suggested for a systemd
unit, when it is trusted (made private, owned by this user) and what could make the processes of
a site disagree. conf.AppSettings.runtime_dir asks ``runtime_dir`` with the settings."""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
from pathlib import Path

from .exit_codes import USAGE, CommandFailure

# Where the default folders live. Fixed: TMPDIR and XDG_RUNTIME_DIR differ between a login shell
# and a service, and so would the locks.
DEFAULT_ROOT = Path("/tmp")  # noqa: S108 - checked: private, ours
MOUNTINFO = Path("/proc/self/mountinfo")


def default_runtime_dir(repo_dir: Path, uid: int | None = None) -> Path:
    """``/tmp/django-zerodeploy-<uid>/<digest of the checkout's path>``."""
    uid = os.getuid() if uid is None else uid
    digest = hashlib.sha256(str(repo_dir).encode()).hexdigest()[:12]
    return DEFAULT_ROOT / f"django-zerodeploy-{uid}" / digest


def runtime_dir(configured: str | os.PathLike[str] | None, repo_dir: Path) -> Path:
    """The runtime directory, created if missing.

    Its files are trusted (the reload command runs the interpreter and argv that master facts
    name), so it must be a real directory of the current user that no other user can write;
    otherwise CommandFailure (exit 2). The default folder per user under /tmp has a
    predictable name another user could create first: it must be private (0700)."""
    if configured:
        path = Path(configured)
        _private_dir(path)
        _check_owned(path, shared=True)
        return path
    path = default_runtime_dir(repo_dir)
    _private_dir(path.parent)
    _check_owned(path.parent, private=True)
    _private_dir(path)
    _check_owned(path)
    return path


def suggested_runtime_dir(name: str) -> str:
    """A runtime directory every process of the site sees alike (not a private /tmp): under
    the RuntimeDirectory of the unit ``name`` (without ``.service``), which systemd creates
    for its User."""
    return f"/run/{name}/zerodeploy"


# -- could the processes of one site disagree? ------------------------------------------------
def private_tmp_mounts(mountinfo: str | None = None) -> list[str]:
    """Mount points of this process that systemd made private (``PrivateTmp=yes`` mounts a
    ``/tmp/systemd-private-*`` folder over ``/tmp`` and ``/var/tmp`` in the unit's namespace)."""
    if mountinfo is None:
        try:
            mountinfo = MOUNTINFO.read_text()
        except OSError:
            return []
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and "systemd-private-" in fields[3]:
            found.append(fields[4])
    return found


def problems(
    configured: str | os.PathLike[str] | None,
    repo_dir: Path,
    env: dict[str, str] | None = None,
    mountinfo: str | None = None,
) -> list[str]:
    """Why other processes of this site may use another runtime directory than this one."""
    env = dict(os.environ) if env is None else env
    path = Path(configured) if configured else default_runtime_dir(repo_dir)
    found = []
    for mount in private_tmp_mounts(mountinfo):
        if path == Path(mount) or Path(mount) in path.parents:
            found.append(
                f"the runtime directory {path} is under {mount}, which is private to this "
                "process's systemd unit (PrivateTmp=yes): deploys and health commands run "
                "outside the unit see another directory, another lock and no readiness reports."
            )
    if configured:
        for name in ("XDG_RUNTIME_DIR", "TMPDIR"):
            value = env.get(name)
            inside = value and (path == Path(value) or Path(value) in path.parents)
            if inside and Path(value) != DEFAULT_ROOT:
                found.append(
                    f"RUNTIME_DIR {path} is inside ${name} ({value}), a per-session "
                    "directory that services started by systemd do not have."
                )
        if not found and Path("/run/user") in path.parents:
            found.append(
                f"RUNTIME_DIR {path} is inside /run/user, which exists only while the user "
                "has a login session (systemd-logind removes it at the last logout)."
            )
    return found


# -- ownership and modes -------------------------------------------------------------------
def _runtime_failure(path: Path | str, problem: str) -> CommandFailure:
    return CommandFailure(
        f"Cannot use the runtime directory {path}: {problem}. Fix it, or set "
        "ZERODEPLOY['RUNTIME_DIR'] to a directory of this user that only it can write.",
        USAGE,
    )


def _private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700 (``mkdir(parents=True,
    mode=...)`` gives the parents the default mode)."""
    try:
        if not os.path.lexists(path.parent) and path.parent != path:
            _private_dir(path.parent)
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass  # checked by _check_owned: it may be a file or a symlink
    except OSError as exc:
        raise _runtime_failure(exc.filename or path, exc.strerror or str(exc)) from exc


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _shared_with_me(st: os.stat_result) -> bool:
    """A directory deliberately group-shared with this user: its group is one of ours, may
    read, write and enter it, and the setgid bit makes every file made inside that group's
    (mode 2770): the setup where Gunicorn runs as one user and deploys as another."""
    groups = {os.getgid(), *os.getgroups()}
    mode = stat.S_IMODE(st.st_mode)
    return st.st_gid in groups and mode & 0o070 == 0o070 and bool(mode & stat.S_ISGID)


def _check_owned(path: Path, *, private: bool = False, shared: bool = False) -> None:
    """``path`` is a real directory of this user that group and others cannot write; with
    ``private``, they cannot read it either (one we own with read bits only is fixed: nobody
    else could have written into it). With ``shared`` (a configured RUNTIME_DIR) a directory
    group-shared with this user (``_shared_with_me``) is accepted too, whoever owns it: its
    group must then hold only the users of this site. Others may never write it."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise _runtime_failure(path, exc.strerror or str(exc)) from exc
    mode = stat.S_IMODE(st.st_mode)
    group_ok = shared and stat.S_ISDIR(st.st_mode) and _shared_with_me(st)
    if stat.S_ISLNK(st.st_mode):
        problem = "it is a symbolic link (name the directory itself)"
    elif not stat.S_ISDIR(st.st_mode):
        problem = "it exists and is not a directory"
    elif mode & 0o002:
        problem = f"group or other users can write it (mode {mode:04o})"
    elif st.st_uid != os.getuid() and not group_ok:
        problem = f"it is owned by {_owner(st.st_uid)}, not by {_owner(os.getuid())}, who runs this"
    elif mode & 0o020 and not group_ok:
        problem = f"group or other users can write it (mode {mode:04o})" + (
            "; a directory shared with the user Gunicorn runs as must be mode 2770 (setgid, "
            "its group holding only the site's users)"
            if shared
            else ""
        )
    else:
        if private and mode & 0o077:
            try:
                os.chmod(path, 0o700)
            except OSError as exc:
                raise _runtime_failure(path, exc.strerror or str(exc)) from exc
        return
    raise _runtime_failure(path, problem)
