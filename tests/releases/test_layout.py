"""The releases layout library on real directories, real symlinks and real virtualenvs (built
with ``python -m venv`` and a real ``pip install`` of wheels the test makes, from a local
folder: no network)."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from django_zerodeploy import exit_codes, proc
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.releases import layout, prune, switch, venvs
from django_zerodeploy.releases.layout import ReleasesRoot
from tests.support.wheels import make_wheel

SHA_A = "a" * 40
SHA_B = "b" * 40


def make_release(root: ReleasesRoot, sha: str, when: datetime, venv: str | None = None):
    name = root.new_release_name(sha, when)
    release = root.release(name)
    release.path.mkdir(parents=True)
    (release.path / "manage.py").write_text("")
    if venv:
        (root.venvs_dir / venv / "bin").mkdir(parents=True, exist_ok=True)
        os.symlink(root.venvs_dir / venv, release.path / layout.VENV_LINK)
    root.write_metadata(name, sha=sha, complete=True)
    return release


def stamp(minute: int) -> datetime:
    return datetime(2026, 12, 2, 4, minute, 0, tzinfo=UTC)


def test_release_names_sort_by_time_and_never_collide(tmp_path):
    root = ReleasesRoot(tmp_path)
    assert layout.release_name(SHA_A.upper(), stamp(5)) == "20261202040500-aaaaaaaaaaaa"
    first = make_release(root, SHA_A, stamp(5))
    second = root.new_release_name(SHA_A, stamp(5))  # same commit, same second
    assert second == "20261202040501-aaaaaaaaaaaa" != first.name
    make_release(root, SHA_B, stamp(1))
    assert [r.name for r in root.releases()] == ["20261202040100-bbbbbbbbbbbb", first.name]
    assert first.sha12 == "a" * 12
    with pytest.raises(ValueError):
        root.release("../etc")


def test_detects_the_layout_from_where_the_project_runs(tmp_path):
    root = ReleasesRoot(tmp_path / "site")
    release = make_release(root, SHA_A, stamp(0))
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    assert layout.detect(checkout).kind == layout.IN_PLACE
    # a release directory without ROOT/current is not the layout yet
    assert layout.detect(release.path).kind == layout.IN_PLACE
    switch.switch(root, release)
    found = layout.detect(root.current_link)  # through the link, as the operator runs it
    assert found.is_releases and found.root == ReleasesRoot(root.path.resolve())
    assert found.release.name == release.name
    assert layout.detect(release.path, "in_place").kind == layout.IN_PLACE
    with pytest.raises(CommandFailure) as refused:
        layout.detect(checkout, "releases")
    assert refused.value.exit_code == exit_codes.USAGE
    assert "--init-releases" in refused.value.message


def test_venv_key_follows_requirements_contents_and_python(tmp_path):
    (tmp_path / "requirements.txt").write_text("Django==5.2\n-r base.txt\n")
    (tmp_path / "base.txt").write_text("psutil\n")
    files = ["requirements.txt", "base.txt"]
    key = venvs.venv_key(tmp_path, files, "cpython-3.11.2")
    assert key.startswith("cpython-3.11.2-") and len(key) == len("cpython-3.11.2-") + 16
    assert venvs.venv_key(tmp_path, list(reversed(files)), "cpython-3.11.2") == key
    assert venvs.venv_key(tmp_path, files, "cpython-3.12.0") != key
    (tmp_path / "base.txt").write_text("psutil==7.0\n")
    assert venvs.venv_key(tmp_path, files, "cpython-3.11.2") != key
    assert venvs.python_version() == venvs.python_version(sys.executable)


@pytest.fixture
def wheelhouse(tmp_path):
    folder = tmp_path / "wheels"
    make_wheel(folder, "zdprobe", "1.0")
    make_wheel(folder, "zdprobe", "2.0")
    return folder


def pip_env(wheelhouse: Path) -> dict[str, str]:
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse))
    env.pop("PIP_INDEX_URL", None)
    return env


def run_in(venv: Path, code: str) -> str:
    from django_zerodeploy import proc

    result = proc.run([str(venv / "bin" / "python"), "-c", code], timeout=60)
    assert result.ok, result.output
    return result.stdout.strip()


@pytest.mark.integration
def test_ensure_builds_a_real_venv_once_and_reuses_it(tmp_path, wheelhouse):
    venvs_dir = tmp_path / "venvs"
    env = pip_env(wheelhouse)
    built = venvs.ensure(venvs_dir, "k1", ["zdprobe==1.0"], env=env)
    assert not built.reused and venvs.is_complete(built.path)
    assert run_in(built.path, "import zdprobe; print(zdprobe.VERSION)") == "1.0"
    # made from the base interpreter: the new venv does not run through the test's venv
    assert run_in(built.path, "import sys; print(sys.prefix)") == str(built.path)
    again = venvs.ensure(venvs_dir, "k1", ["zdprobe==2.0"], env=env)
    assert again.reused and again.output == ""
    assert run_in(built.path, "import zdprobe; print(zdprobe.VERSION)") == "1.0"


@pytest.mark.integration
def test_a_new_venv_starts_from_the_serving_ones_packages_and_ends_as_a_fresh_one(tmp_path):
    """Seeded from a venv with zdprobe 1.0 and zdextra: the new one has what its requirements
    resolve to (2.0, no zdextra; unpinned: the newest, as a fresh venv), its console script runs
    with its own Python, and the seed is untouched. A seed that cannot be copied: from scratch."""
    wheels = tmp_path / "wheels"
    main = "def main():\n    import sys; print(VERSION, sys.prefix)\n"
    for version in ("1.0", "2.0"):
        make_wheel(wheels, "zdprobe", version, main, scripts={"zdprobe-version": "zdprobe:main"})
    make_wheel(wheels, "zdextra", "1.0")
    venvs_dir, env = tmp_path / "venvs", pip_env(wheels)
    seed = venvs.ensure(venvs_dir, "k1", ["zdprobe==1.0", "zdextra==1.0"], env=env).path

    def script(venv: Path) -> str:
        return proc.run([str(venv / "bin" / "zdprobe-version")], timeout=60).stdout.strip()

    wheel = wheels / "zdprobe-2.0-py3-none-any.whl"
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (tmp_path / "hashed.txt").write_text(f"zdprobe==2.0 --hash=sha256:{digest}\n")
    (tmp_path / "base.txt").write_text(f"-r {tmp_path / 'hashed.txt'}\n")
    cases = {
        "k2": ["zdprobe==2.0"],
        "k3": ["zdprobe"],  # unpinned: the newest, as in a fresh venv, not the seed's 1.0
        "k5": ["-r", str(tmp_path / "base.txt")],  # hashes, in an included file: pip reads them
        "k6": [str(wheel)],  # a direct requirement
    }
    for key, wanted in cases.items():
        built = venvs.ensure(venvs_dir, key, wanted, env=env, seed=seed)
        assert built.installer == "pip from k1's packages", built.output
        assert run_in(built.path, "import zdprobe; print(zdprobe.VERSION)") == "2.0"
        found = run_in(built.path, "import importlib.util as u; print(u.find_spec('zdextra'))")
        assert found == "None"
        assert script(built.path) == f"2.0 {built.path}"
    assert venvs.uses_hashes(cases["k5"]) and not venvs.uses_hashes(["-r", str(tmp_path / "x")])
    assert run_in(seed, "import zdprobe, zdextra; print(zdprobe.VERSION)") == "1.0"
    assert script(seed) == f"1.0 {seed}"

    hollow = venvs_dir / "hollow"  # marked complete, but no site-packages to copy
    (hollow / "bin").mkdir(parents=True)
    (hollow / "bin" / "python").write_text("")
    (hollow / venvs.COMPLETE).write_text("{}")
    built = venvs.ensure(venvs_dir, "k4", ["zdprobe==2.0"], env=env, seed=hollow)
    assert built.installer == "pip" and "from scratch" in built.output
    assert script(built.path) == f"2.0 {built.path}"


@pytest.mark.integration
def test_a_half_built_venv_is_rebuilt_and_a_failed_one_never_marked(tmp_path, wheelhouse):
    venvs_dir = tmp_path / "venvs"
    env = pip_env(wheelhouse)
    half = venvs_dir / "k2"
    (half / "bin").mkdir(parents=True)
    (half / "bin" / "python").write_text("left by a killed build")
    built = venvs.ensure(venvs_dir, "k2", ["zdprobe==2.0"], env=env)
    assert not built.reused
    assert run_in(built.path, "import zdprobe; print(zdprobe.VERSION)") == "2.0"
    with pytest.raises(venvs.VenvError) as failed:
        venvs.ensure(venvs_dir, "k3", ["zdprobe==9.9"], env=env)
    assert "pip install exited" in failed.value.message
    assert not venvs.is_complete(venvs_dir / "k3")


def test_switch_is_atomic_for_a_reader_and_refuses_an_incomplete_release(tmp_path):
    root = ReleasesRoot(tmp_path)
    one = make_release(root, SHA_A, stamp(0))
    two = make_release(root, SHA_B, stamp(1))
    switch.switch(root, one)
    assert root.previous() is None
    seen_missing = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                os.readlink(root.current_link)
                (root.current_link / "manage.py").stat()
            except OSError as exc:
                seen_missing.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(300):
            switch.switch(root, two)
            switch.switch(root, one)
    finally:
        stop.set()
        thread.join()
    assert seen_missing == []
    done = switch.switch(root, two)
    assert (done.old, done.new) == (one, two)
    assert os.readlink(root.current_link) == f"releases/{two.name}"  # relative: ROOT can move
    assert root.previous() == one
    # back to one, naming one as previous (a switch back after a kill): previous never is current
    switch.switch(root, one, previous=one)
    assert root.current() == one and root.previous() is None
    switch.switch(root, two)
    half = root.release(root.new_release_name("c" * 40, stamp(2)))
    half.path.mkdir()
    with pytest.raises(switch.NotComplete):
        switch.switch(root, half)
    assert root.current() == two
    (tmp_path / ".current.tmp-99").symlink_to("releases/x")
    switch.clean_temporary_links(root)
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_prune_keeps_current_previous_and_their_venvs(tmp_path):
    root = ReleasesRoot(tmp_path)
    old = make_release(root, SHA_A, stamp(0), venv="v-old")
    made = [make_release(root, f"{i:x}" * 40, stamp(i), venv=f"v{i % 2}") for i in range(1, 7)]
    (root.venvs_dir / "v-unused" / "bin").mkdir(parents=True)
    killed = root.release(root.new_release_name("c" * 40, stamp(30)))
    killed.path.mkdir()  # a build a kill cut short: no complete metadata
    (root.shared_dir).mkdir()
    (root.shared_dir / "db.sqlite3").write_text("data")
    os.symlink(root.shared_dir / "db.sqlite3", made[0].path / "db.sqlite3")
    switch.switch(root, made[-1], previous=old)  # e.g. after a rollback chain
    result = prune.prune(root, keep=3)
    names = [r.name for r in root.releases()]
    assert names == [old.name, made[3].name, made[4].name, made[5].name]
    assert set(result.releases) == {made[0].name, made[1].name, made[2].name, killed.name}
    assert sorted(p.name for p in root.venvs_dir.iterdir()) == ["v-old", "v0", "v1"]
    assert result.venvs == ["v-unused"]
    assert (root.shared_dir / "db.sqlite3").read_text() == "data"  # links removed, not followed
    assert not root.metadata_path(made[0].name).exists()
    assert "3 release" not in result.describe() and "4 release(s)" in result.describe()
    assert prune.prune(root, keep=3).describe() == "nothing to prune"


def test_a_reexec_follows_current_into_the_new_release(tmp_path):
    from django_zerodeploy.releases.reexec import follow_current

    root = ReleasesRoot(tmp_path)
    old = make_release(root, SHA_A, stamp(0), venv="v1")
    new = make_release(root, SHA_B, stamp(1), venv="v2")
    switch.switch(root, old)
    switch.switch(root, new)  # the deploy switched current before the USR2
    for cwd in (str(old.path), str(root.current_link)):  # systemd's resolved cwd, or a shell's PWD
        ctx = {
            "cwd": cwd,
            0: f"{cwd}/.venv/bin/python",
            "args": [f"{cwd}/.venv/bin/python", f"{cwd}/.venv/bin/gunicorn", f"--chdir={cwd}"],
        }
        environ = {"PWD": cwd, "HOME": "/root"}
        assert follow_current(ctx, environ) == str(new.path)
        assert ctx["cwd"] == str(new.path) and environ == {"PWD": str(new.path), "HOME": "/root"}
        assert ctx[0] == f"{new.path}/.venv/bin/python"
        assert ctx["args"][1:] == [f"{new.path}/.venv/bin/gunicorn", f"--chdir={new.path}"]
    # started as ROOT/current/.venv/bin/gunicorn: the interpreter is the #! line's, in ROOT/venvs
    for venvs_dir in (str(root.venvs_dir), os.path.realpath(root.venvs_dir)):
        python = f"{venvs_dir}/v1/bin/python"
        ctx = {"cwd": str(old.path), 0: python, "args": [f"{old.path}/.venv/bin/gunicorn"]}
        follow_current(ctx, {})
        assert ctx[0] == f"{new.path}/.venv/bin/python", ctx
        assert ctx["args"] == [f"{new.path}/.venv/bin/gunicorn"]
    elsewhere = {"cwd": str(tmp_path / "checkout"), 0: "/usr/bin/python3", "args": []}
    assert follow_current(elsewhere, {}) is None and elsewhere["cwd"] == str(tmp_path / "checkout")
