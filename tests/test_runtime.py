"""The runtime directory is where the processes of one site meet (locks, readiness reports, the
drain flag): every one of them must compute the same path, whatever session it runs in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.core import checks
from django.test import override_settings

from django_zerodeploy import exit_codes, runtime
from django_zerodeploy.checks import check_runtime_dir
from django_zerodeploy.conf import app_settings
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.runtime import default_runtime_dir, private_tmp_mounts, problems
from tests.deploy.test_concurrency import SLOW_MIGRATION, start_deploy, step_status
from tests.deploy.test_deploy import deploy, show
from tests.support.gunicorn import wait_for
from tests.support.users import NOBODY, needs_root

__all__ = ["start_deploy"]  # a fixture, used by name

PRIVATE_TMP = (
    "36 25 8:1 /tmp/systemd-private-0f3c-gunicorn.service-Ab12/tmp /tmp rw,relatime - ext4 "
    "/dev/sda1 rw\n"
    "37 25 8:1 /var/tmp/systemd-private-0f3c-gunicorn.service-Cd34/tmp /var/tmp rw - ext4 "
    "/dev/sda1 rw\n"
    "38 25 0:5 / /proc rw - proc proc rw\n"
)


def test_the_default_ignores_session_variables(tmp_path, monkeypatch):
    """An SSH login has XDG_RUNTIME_DIR, a service has not; a shell may set TMPDIR. The same
    checkout and user must give the same directory in all of them."""
    monkeypatch.setattr(runtime, "DEFAULT_ROOT", tmp_path / "root")
    repo = tmp_path / "repo"
    repo.mkdir()
    seen = set()
    with override_settings(ZERODEPLOY={"REPO_DIR": str(repo)}):
        for xdg, tmpdir in (("", ""), (str(tmp_path / "xdg"), ""), ("", str(tmp_path / "t"))):
            monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
            monkeypatch.setenv("TMPDIR", tmpdir)
            seen.add(app_settings.runtime_dir)
    (only,) = seen
    assert only.parent == tmp_path / "root" / f"django-zerodeploy-{os.getuid()}"
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "t").exists()


def test_the_default_in_processes_with_different_sessions(tmp_path):
    """The same, in real processes: a login shell's environment and a service's."""
    script = textwrap.dedent(
        f"""
        import django
        from django.conf import settings
        settings.configure(INSTALLED_APPS=[], ZERODEPLOY={{"REPO_DIR": {str(tmp_path)!r}}})
        django.setup()
        from django_zerodeploy.runtime import default_runtime_dir
        from django_zerodeploy.conf import app_settings
        print(default_runtime_dir(app_settings.repo_dir))
        """
    )
    base = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "TMPDIR")}
    login = {**base, "XDG_RUNTIME_DIR": str(tmp_path), "TMPDIR": str(tmp_path)}
    paths = {
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        for env in (base, login)
    }
    assert len(paths) == 1 and paths.pop().startswith(f"/tmp/django-zerodeploy-{os.getuid()}/")


def test_a_private_tmp_is_reported(tmp_path):
    assert private_tmp_mounts(PRIVATE_TMP) == ["/tmp", "/var/tmp"]
    found = problems(None, tmp_path, env={}, mountinfo=PRIVATE_TMP)
    assert len(found) == 1 and "PrivateTmp=yes" in found[0]
    assert problems("/srv/site/run", tmp_path, env={}, mountinfo=PRIVATE_TMP) == []
    assert problems("/var/tmp/site", tmp_path, env={}, mountinfo=PRIVATE_TMP) != []
    assert problems(None, tmp_path, env={}, mountinfo="38 25 0:5 / /proc rw - proc proc rw") == []


def test_a_runtime_dir_in_a_login_session_directory_is_reported(tmp_path):
    env = {"XDG_RUNTIME_DIR": "/run/user/1000", "TMPDIR": str(tmp_path)}
    (xdg,) = problems("/run/user/1000/site", tmp_path, env=env, mountinfo="")
    assert "$XDG_RUNTIME_DIR" in xdg
    (tmp,) = problems(str(tmp_path / "site"), tmp_path, env=env, mountinfo="")
    assert "$TMPDIR" in tmp
    (run_user,) = problems("/run/user/1000/site", tmp_path, env={}, mountinfo="")
    assert "login session" in run_user
    assert problems("/var/lib/site/run", tmp_path, env=env, mountinfo="") == []


def test_the_system_check_warns(tmp_path, monkeypatch):
    info = tmp_path / "mountinfo"
    info.write_text(PRIVATE_TMP)
    monkeypatch.setattr(runtime, "MOUNTINFO", info)
    with override_settings(ZERODEPLOY={"REPO_DIR": str(tmp_path)}):
        (warning,) = check_runtime_dir()
    assert warning.id == "zerodeploy.W002" and warning.level == checks.WARNING
    assert "RUNTIME_DIR" in warning.hint
    with override_settings(ZERODEPLOY={"REPO_DIR": str(tmp_path), "RUNTIME_DIR": "/srv/x"}):
        assert check_runtime_dir() == []


@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("unshare"), reason="needs root: mounts")
def test_a_real_private_tmp_is_seen(tmp_path):
    """What PrivateTmp=yes does (a new mount namespace, a private folder bound over /tmp),
    done with unshare(1): the process inside sees it in its own mountinfo."""
    private = tmp_path / "systemd-private-abc-site.service-x1" / "tmp"
    private.mkdir(parents=True)
    code = "from django_zerodeploy.runtime import private_tmp_mounts; print(private_tmp_mounts())"
    result = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount --bind "$1" /tmp && exec "$2" -c "$3"',
            "sh",
            str(private),
            sys.executable,
            code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['/tmp']"
    assert private_tmp_mounts() == []  # this process's own /tmp is the host's


@pytest.mark.integration
def test_a_deploy_from_a_login_shell_meets_the_running_deploy(
    site, gunicorn_factory, qcluster_factory, load_factory, start_deploy, tmp_path
):
    """Gunicorn, the qcluster and a first deploy run without XDG_RUNTIME_DIR (as services do);
    a second deploy from an SSH-like shell (XDG_RUNTIME_DIR and TMPDIR set) must find the first
    one's lock, not a lock of its own: exit 4."""
    site.extra_env.update(ZERODEPLOY_RUNTIME_DIR="", XDG_RUNTIME_DIR="", TMPDIR="")
    default = default_runtime_dir(site.server.resolve())
    login = tmp_path / "login"
    login.mkdir(mode=0o700)
    try:
        server = gunicorn_factory(workers=2)
        cluster = qcluster_factory(site)
        v2 = site.commit_release(
            "v2", {"notes/migrations/0002_slow.py": SLOW_MIGRATION.format(seconds=6)}
        )
        load = load_factory(port=server.port, clients=3, max_seconds=240, timeout=30).start()
        try:
            with load.operation():
                first = start_deploy(site)
                assert wait_for(lambda: step_status(site, "migrate") == "running", timeout=120)
                holder = json.loads((default / "deploy.lock").read_text())
                assert holder["pid"] == first.pid
                second = deploy(site, XDG_RUNTIME_DIR=str(login), TMPDIR=str(login))
                assert second.returncode == 4, show(second)
                assert f"pid {first.pid}" in second.stdout + second.stderr
                out, err = first.communicate(timeout=240)
                assert first.returncode == 0, out + err
        finally:
            report = load.stop()
        report.assert_covered()
        assert report.failed == 0, report.summary()
        assert server.served_releases() == {"v2"} and report.last_marker == "v2"
        assert cluster.alive(), cluster.log_text()
        # the workers' reports (written by Gunicorn without the variables) are where the
        # deploy looked; nothing was created under the login session's directories
        assert any((default / "workers").iterdir())
        assert list(login.iterdir()) == []
        assert v2
    finally:
        shutil.rmtree(default, ignore_errors=True)


# -- whose runtime directory: only this user's own is trusted ----------------------------------
@pytest.fixture
def run_dir(settings, tmp_path: Path) -> Path:
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "run"), "REPO_DIR": str(tmp_path)}
    return tmp_path / "run"


def expect_refused(match: str) -> CommandFailure:
    with pytest.raises(CommandFailure) as refused:
        _ = app_settings.runtime_dir
    assert refused.value.exit_code == exit_codes.USAGE
    assert match in refused.value.message, refused.value.message
    return refused.value


@needs_root
def test_a_runtime_dir_owned_by_another_user_is_refused(run_dir):
    run_dir.mkdir(mode=0o700)
    os.chown(run_dir, NOBODY, NOBODY)
    refused = expect_refused("is owned by")
    assert str(run_dir) in refused.message and "RUNTIME_DIR" in refused.message


def test_a_group_or_world_writable_runtime_dir_is_refused(run_dir):
    run_dir.mkdir()
    os.chmod(run_dir, 0o777)  # noqa: S103
    expect_refused("group or other users can write it (mode 0777)")
    os.chmod(run_dir, 0o775)  # noqa: S103
    expect_refused("mode 0775")
    # readable by others is fine for a configured directory
    os.chmod(run_dir, 0o755)  # noqa: S103
    assert app_settings.runtime_dir == run_dir


def test_a_symlinked_runtime_dir_is_refused(run_dir, tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    run_dir.symlink_to(real)
    expect_refused("symbolic link")


def test_a_runtime_dir_that_cannot_be_created_is_a_usage_error(settings, tmp_path):
    (tmp_path / "a-file").write_text("")
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "a-file" / "run")}
    refused = expect_refused(f"{tmp_path / 'a-file' / 'run'}: Not a directory")
    assert "Traceback" not in refused.message
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "a-file")}
    expect_refused("it exists and is not a directory")


def test_missing_parents_are_created_private(settings, tmp_path):
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "a" / "b" / "run")}
    assert app_settings.runtime_dir == tmp_path / "a" / "b" / "run"
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "run"):
        assert path.stat().st_mode & 0o777 == 0o700, path


@needs_root
def test_the_default_folder_under_tmp_must_be_this_users_own(settings, tmp_path, monkeypatch):
    """The default per-user folder has a predictable name in a shared directory (/tmp):
    another user may have made it first."""
    monkeypatch.setattr(runtime, "DEFAULT_ROOT", tmp_path)
    settings.ZERODEPLOY = {"REPO_DIR": str(tmp_path)}
    user_dir = tmp_path / f"django-zerodeploy-{os.getuid()}"
    user_dir.mkdir()
    os.chown(user_dir, NOBODY, NOBODY)
    expect_refused("is owned by")
    os.chown(user_dir, os.getuid(), os.getgid())
    # others may add entries: something may be planted already
    os.chmod(user_dir, 0o733)  # noqa: S103
    expect_refused("mode 0733")
    # ours, read-only for others (as older versions made it): fixed
    os.chmod(user_dir, 0o755)  # noqa: S103
    path = app_settings.runtime_dir
    assert path.parent == user_dir and user_dir.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o700
