"""``deploy --init-releases ROOT`` from an in-place checkout shaped as startproject makes it: a
real clone, a real venv holding the running venv's packages (``pip freeze`` installed by real
pip), a copy of the git-ignored state in shared/, and current."""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import subprocess
import sys

import pytest

from django_zerodeploy import exit_codes
from django_zerodeploy.releases.layout import ReleasesRoot, detect
from django_zerodeploy.releases.venvs import is_complete
from tests.support.gunicorn import free_port
from tests.support.releases import (
    applied_migrations,
    init_releases,
    release_python,
    run_manage,
    shape_like_startproject,
)
from tests.support.site import git


@pytest.mark.integration
def test_init_makes_a_standalone_first_release_with_its_venv_and_shared_state(site, tmp_path):
    shape_like_startproject(site)
    (site.server / "venv").mkdir()
    (site.server / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")  # the seed's venv/
    exclude = site.server / ".git" / "info" / "exclude"
    exclude.write_text(exclude.read_text() + "venv/\n")
    root_dir = tmp_path / "srv"
    head = site.server_head()
    out = init_releases(site, root_dir).stdout

    root = ReleasesRoot(root_dir)
    release = root.current()
    assert release is not None and release.sha12 == head[:12]
    assert root.is_complete(release.name) and root.previous() is None
    # a standalone checkout of HEAD on the branch, tracking the same upstream, no alternates
    assert git(release.path, "rev-parse", "HEAD") == head
    assert git(release.path, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(release.path, "rev-parse", "--abbrev-ref", "main@{upstream}") == "origin/main"
    assert git(release.path, "remote", "get-url", "origin") == str(site.origin)
    assert not (release.path / ".git" / "objects" / "info" / "alternates").exists()
    assert git(release.path, "status", "--porcelain") == ""  # links are ignored state too
    # shared/ holds copies; the checkout keeps its originals
    for rel in (".env", "db.sqlite3", "media"):
        assert (release.path / rel).is_symlink()
        assert os.readlink(release.path / rel) == str(root.shared_dir / rel)
        assert (site.server / rel).exists() and not (site.server / rel).is_symlink()
    assert (root.shared_dir / ".env").read_text() == "EXAMPLE_SECRET=from-dotenv\n"
    assert (root.shared_dir / "media/uploads/a.txt").read_text() == "uploaded"
    assert applied_migrations(root.shared_dir / "db.sqlite3") == applied_migrations(
        site.server / "db.sqlite3"
    )
    assert not (release.path / "venv").exists() and not (root.shared_dir / "venv").exists()
    assert "not shared: venv (a virtualenv" in out
    # its own venv, with the running venv's packages
    venv = root.venvs_dir / release.venv_key
    assert is_complete(venv) and os.readlink(release.path / ".venv") == str(venv)
    check = run_manage(site, root.current_link, "check", python=release_python(root_dir))
    assert check.returncode == 0, check.stdout + check.stderr
    # the release's interpreter finds the running venv's versions, from its own venv
    probe = (
        "import sys, importlib.metadata as m; "
        "print(sys.prefix); "
        "print(*(m.version(n) for n in ('Django', 'gunicorn', 'django-zerodeploy')))"
    )
    found_versions = subprocess.run(
        [release_python(root_dir), "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert os.path.realpath(found_versions[0]) == os.path.realpath(venv)
    assert found_versions[1].split() == [
        importlib.metadata.version(n) for n in ("Django", "gunicorn", "django-zerodeploy")
    ]
    # what to run from now on
    assert f"WorkingDirectory={root.current_link}" in out
    assert f"ExecStart={root.current_link}/.venv/bin/gunicorn" in out
    # the layout is detected from where the project runs
    found = detect(root.current_link)
    assert found.is_releases and found.release == release


def test_init_refuses_a_root_it_cannot_use_in_one_message(site, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    inside = site.server / "srv"
    for root, words in ((busy, "is not empty"), (inside, "is inside the checkout")):
        result = run_manage(site, site.server, "deploy", "--init-releases", str(root))
        assert result.returncode == exit_codes.USAGE
        assert words in result.stderr and "Traceback" not in result.stderr
        assert result.stderr.count("--init-releases:") == 1
    assert not inside.exists()
    (site.server / "manage.py").write_text("# changed\n" + (site.server / "manage.py").read_text())
    result = run_manage(site, site.server, "deploy", "--init-releases", str(tmp_path / "new"))
    assert result.returncode == exit_codes.USAGE and "manage.py" in result.stderr


@pytest.mark.integration
def test_init_prints_the_command_a_bare_gunicorn_was_started_with(site, tmp_path, gunicorn_factory):
    """A master started as a bare ``gunicorn`` (its settings in ./gunicorn.conf.py, as many
    projects run it): the printed command is the bare one again, without a ``-c`` that would
    make Gunicorn skip the project's file, and started from current it serves where it did."""
    shape_like_startproject(site)
    site.extra_env["ZERODEPLOY_RUNTIME_DIR"] = ""  # the default directory, as in a real project
    site.port = free_port()
    conf = site.server / "gunicorn.conf.py"
    conf.write_text(
        conf.read_text() + f'bind = "127.0.0.1:{site.port}"\npidfile = "{site.pidfile}"\n'
    )
    git(site.server, "commit", "-qam", "Gunicorn's bind and pidfile in gunicorn.conf.py")
    in_place = gunicorn_factory(command=[sys.executable, "-m", "gunicorn"])
    root_dir = tmp_path / "srv"
    out = init_releases(site, root_dir).stdout
    current = root_dir / "current"
    bare = str(current / ".venv" / "bin" / "gunicorn")
    assert f"ExecStart={bare}\n" in out, out
    assert f"cd {current} && {bare}\n" in out, out

    in_place.stop()
    site.pidfile.unlink(missing_ok=True)
    site.extra_env["EXAMPLE_DB_PATH"] = str(current / "db.sqlite3")
    started = out.split(f"cd {current} && ", 1)[1].splitlines()[0]
    server = gunicorn_factory(cwd=current, command=shlex.split(started))
    assert server.get("/")[0] == 200  # on the port gunicorn.conf.py binds
    assert int(site.pidfile.read_text()) == server.master_pid()
    # the command and Gunicorn's processes agree on the runtime directory (named after ROOT)
    check = run_manage(site, current, "deploy", "--check", python=release_python(root_dir))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "runtime directory" in check.stdout
    assert os.path.realpath(f"/proc/{server.master_pid()}/cwd") == str(
        ReleasesRoot(root_dir).current().path
    )
