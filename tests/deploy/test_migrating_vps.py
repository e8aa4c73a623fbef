"""docs/migrating.md, followed step by step on a VPS-shaped fixture (tests/support/vps.py).

Real users (``useradd``), Gunicorn as the web user on a Unix socket, the deploy run as the
deploying user, a real ``sudo`` with a sudoers drop-in the test writes, real pip installing the
app from a wheel named in requirements.txt, a real load through the socket. systemd is not PID 1
on this machine: Gunicorn is started as its unit's ExecStart would, and the reload goes through
``sudo -n -u WEBUSER kill`` (the usr2 strategy, for real). The ``sudo -n systemctl reload UNIT``
path is run for real through sudo too, with a stand-in ``systemctl`` (the one of
tests/gunicorn/test_strategies.py) that does what the documented ExecReload does; the test says so.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from django_zerodeploy.gunicorn.privilege import SECURE_PATH
from tests.gunicorn.test_strategies import UNIT, systemctl_standin
from tests.support import vps as vps_mod
from tests.support.site import EXAMPLE, git
from tests.support.vps import Sudoers, Users, Vps, VpsGunicorn

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: useradd, sudoers, setpriv"),
]


def open_tmpdir(prefix: str) -> Path:
    """A folder under /tmp the test users can enter (pytest's own base folder is private)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def wheel() -> Iterator[Path]:
    folder = open_tmpdir("zd-wheels-")
    try:
        yield vps_mod.build_wheel(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def users() -> Iterator[Users]:
    vps_mod.ensure_sudo()
    made = vps_mod.make_users()
    try:
        yield made
    finally:
        vps_mod.remove_users(made)


@pytest.fixture
def sudoers() -> Iterator[Sudoers]:
    drop_ins = Sudoers()
    try:
        yield drop_ins
    finally:
        drop_ins.remove_all()


@pytest.fixture
def vps(users, wheel) -> Iterator[Vps]:
    """The server before the migration; every Gunicorn started on it is stopped at teardown."""
    root = open_tmpdir("zd-vps-") / "srv"
    started: list[VpsGunicorn] = []
    try:
        site = vps_mod.make_vps(root, users, wheel)
        site.started = started  # type: ignore[attr-defined]
        yield site
    finally:
        for server in started:
            server.stop()
        shutil.rmtree(root.parent, ignore_errors=True)


def start(site: Vps, *, hooked: bool) -> VpsGunicorn:
    server = site.gunicorn(hooked=hooked)
    if not hooked:
        server.ready_path = "/"  # no /healthz/ before the app is installed
    site.started.append(server)  # type: ignore[attr-defined]
    return server.start()


def owner(pid: int | None) -> str:
    assert pid
    return psutil.Process(pid).username()


# -- the guide's steps, in its order ----------------------------------------------------------------
def step1_install_and_configure(site: Vps) -> str:
    """Steps 1 and 2 of docs/migrating.md: the app in requirements.txt (a wheel: it is not on PyPI), the settings
    (INSTALLED_APPS, MIDDLEWARE, urls, ZERODEPLOY), the Gunicorn hooks; committed and pushed."""
    for rel in ("exampleproject/settings.py", "exampleproject/urls.py", "gunicorn.conf.py"):
        shutil.copy(EXAMPLE / rel, site.dev / rel)
    with (site.dev / "requirements.txt").open("a") as handle:
        handle.write(f"django-zerodeploy @ file://{site.wheel}\n")
    with (site.dev / "exampleproject" / "settings.py").open("a") as handle:
        handle.write(
            "\n# django-zerodeploy on this server (docs/migrating.md)\n"
            "ZERODEPLOY.update({\n"
            f"    'RUNTIME_DIR': '{site.runtime}',\n"
            f"    'GUNICORN_PIDFILE': '{site.pidfile}',\n"
            f"    'HEALTHZ_URL': 'unix:{site.sock}:/healthz/',\n"
            "    'RELOAD_STRATEGY': 'usr2',\n"
            "})\n"
        )
    git(site.dev, "add", "-A")
    git(site.dev, "commit", "-q", "-m", "Install django-zerodeploy")
    git(site.dev, "push", "-q", "origin", "HEAD:main")
    return git(site.dev, "rev-parse", "HEAD")


def step3_old_way_one_last_time(site: Vps) -> None:
    """Step 3: on the server, as the deploying user: pull, pip install, migrate, collectstatic."""
    site.server_git("pull", "-q", "--ff-only")
    site.install_requirements()
    site.manage("migrate", "--noinput")
    site.manage("collectstatic", "--noinput")


def deploy_under_load(site: Vps, server: VpsGunicorn, load_factory) -> tuple:  # noqa: ANN001
    load = load_factory(uds=str(site.sock), clients=3, max_seconds=240, timeout=30).start()
    time.sleep(0.5)
    try:
        result = site.manage("deploy", "--no-input", check=False)
        ended = time.monotonic()
        time.sleep(0.5)
    finally:
        report = load.stop()
    assert report.total > 0 and not report.cut_short, "the load did not cover the deploy"
    assert any(h.started > ended for h in report.hits), "no request after the deploy ended"
    return result, report


def show(result) -> str:  # noqa: ANN001
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr[-4000:]}"


def test_the_migration_guide_end_to_end(vps, users, sudoers, load_factory):
    site = vps
    shell_era = start(site, hooked=False)
    assert owner(shell_era.master_pid()) == users.web
    assert shell_era.served_release() == "v1"

    installed = step1_install_and_configure(site)
    step3_old_way_one_last_time(site)
    assert site.server_head() == installed

    # Step 4: the one Gunicorn restart that loads the hooks (systemctl restart gunicorn)
    shell_era.stop()
    server = start(site, hooked=True)
    first_master = server.master_pid()
    assert owner(first_master) == users.web
    assert server.healthz()["releaseId"] == installed

    # Step 5, the sudoers line. A deploy without it is refused before anything changes: one
    # message naming the exact line, exit 2, the site still serving.
    v2 = site.commit_release("v2")
    kill = shutil.which("kill", path=SECURE_PATH)
    line = (
        f"{users.deploy} ALL=({users.web}) NOPASSWD: {kill} -s USR2 -- *, "
        f"{kill} -s WINCH -- *, {kill} -s TERM -- *"
    )
    refused = site.manage("deploy", "--no-input", check=False)
    assert refused.returncode == 2, show(refused)
    output = refused.stdout + refused.stderr
    assert output.count(f"Gunicorn master {first_master} runs as user {users.web}") == 1
    assert output.count(line) == 1, show(refused)
    assert "Traceback" not in output
    assert site.server_head() == installed and server.master_pid() == first_master
    assert server.served_release() == "v1"

    # ... then with it (validated by visudo -cf), step 6: the first deploy, under load through
    # the socket, reloaded through sudo -n -u WEBUSER kill
    sudoers.allow(line)
    result, report = deploy_under_load(site, server, load_factory)
    assert result.returncode == 0, show(result)
    assert report.failed == 0, report.summary()
    assert report.last_marker == "v2", report.summary()
    assert server.served_releases() == {"v2"}
    assert site.server_head() == v2 and site.server_branch() == "main"
    new_master = server.master_pid()
    assert new_master != first_master and owner(new_master) == users.web
    assert server.proc and server.proc.wait(timeout=30) == 0  # the old master (our child) exited
    record = json.loads(site.manage("deploy", "--history", "--json", "--limit", "1").stdout)[0]
    verify = next(s for s in record["steps"] if s["name"] == "verify")
    assert f"unix:{site.sock}:/healthz/ reports releaseId '{v2}'" in verify["detail"]

    # and a broken release: refused, the site keeps serving v2 throughout
    site.commit_release("v3", {"notes/views.py": "raise ImportError('broken release')\n"})
    broken, report = deploy_under_load(site, server, load_factory)
    assert broken.returncode == 1, show(broken)
    assert "broken release" in broken.stdout + broken.stderr
    assert report.failed == 0, report.summary()
    assert set(report.markers) == {"v2"}, report.summary()
    assert site.server_head() == v2 and server.served_releases() == {"v2"}


def test_systemd_strategy_reloads_through_sudo_systemctl(vps, users, sudoers, load_factory):
    """``sudo -n systemctl reload UNIT`` for a deployer who is not root. systemd cannot run
    here: the ``systemctl`` run through the real sudo is the stand-in of
    tests/gunicorn/test_strategies.py (its ``reload`` does what ExecReload does: HUP to MainPID);
    the sudoers rule names exactly that binary and arguments."""
    site = vps
    step1_install_and_configure(site)
    step3_old_way_one_last_time(site)
    server = start(site, hooked=True)
    master = server.master_pid()
    folder = site.root / "standin"
    folder.mkdir()
    folder.chmod(0o755)
    bin_dir, log = systemctl_standin(folder, site.pidfile)
    (bin_dir / "systemctl").chmod(0o755)  # run by the deployer too (systemctl show)
    log.touch()
    log.chmod(0o666)  # the deployer's `systemctl show` calls log there too
    path = f"{bin_dir}:{site.env()['PATH']}"
    argv = ["reload_gunicorn", "--strategy", "systemd", "--unit", UNIT, "--json"]

    refused = site.manage(*argv, check=False, PATH=path)
    line = f"{users.deploy} ALL=(root) NOPASSWD: {bin_dir}/systemctl reload {UNIT}"
    assert refused.returncode == 2, show(refused)
    assert f"Reloading {UNIT} needs root" in refused.stdout + refused.stderr
    assert line in refused.stdout + refused.stderr
    assert "reload" not in log.read_text()  # nothing ran

    sudoers.allow(line)
    site.commit_release("v2")
    site.server_git("pull", "-q", "--ff-only")
    old_workers = set(server.worker_pids())
    load = load_factory(uds=str(site.sock), clients=3, max_seconds=240, timeout=30).start()
    time.sleep(0.5)
    try:
        ran = site.manage(*argv, check=False, PATH=path)
        ended = time.monotonic()
        time.sleep(0.5)
    finally:
        report = load.stop()
    assert ran.returncode == 0, show(ran)
    assert report.total > 0 and not report.cut_short
    assert any(h.started > ended for h in report.hits)
    assert report.failed == 0, report.summary()
    assert f"reload {UNIT}" in log.read_text().splitlines()
    assert server.master_pid() == master and not set(server.worker_pids()) & old_workers
    assert server.served_releases() == {"v2"}
    assert json.loads(ran.stdout)["strategy"] == "systemd"


class UnprovableGunicorn(VpsGunicorn):
    """The web user's Gunicorn started without the hooks, by the system interpreter with the
    venv's packages on PYTHONPATH: nothing the deploying user can read ties it to the checkout
    (its working directory is unreadable to another user, its command line names no path in
    the checkout, no worker reports into the runtime directory)."""

    def argv(self) -> list[str]:
        site = self.site
        assert isinstance(site, Vps) and site.users
        args = VpsGunicorn.argv(self)[len(site.as_user(site.users.web)) + 1 :]
        return [*site.as_user(site.users.web), vps_mod.SYSTEM_PYTHON, "-m", "gunicorn", *args]


def test_a_master_of_another_user_nothing_proves_is_named_and_not_signalled(vps, users):
    site = vps
    step1_install_and_configure(site)
    step3_old_way_one_last_time(site)
    packages = next((site.venv / "lib").glob("python3*/site-packages"))
    server = UnprovableGunicorn(site, hooked=False, workers=2)
    server.config = "/dev/null"  # an empty config: not the checkout's gunicorn.conf.py
    server.extra_env = {"PYTHONPATH": str(packages)}
    site.started.append(server)  # type: ignore[attr-defined]
    server.start()
    master, workers = server.master_pid(), set(server.worker_pids())
    assert owner(master) == users.web

    ran = site.manage("reload_gunicorn", check=False)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 2, show(ran)
    assert f"names pid {master}, a Gunicorn master running as user {users.web}" in output
    assert "nothing proves it is this project's" in output and "RUNTIME_DIR" in output
    assert "Traceback" not in output
    assert server.master_pid() == master and set(server.worker_pids()) == workers
    assert "Handling signal" not in server.log_text()


class ModuleGunicorn(VpsGunicorn):
    """The web user's Gunicorn as `venv/bin/python -m gunicorn`, without the hooks: a USR2
    re-exec could not import Django (Gunicorn #3281), so the reload falls back to a HUP."""

    def argv(self) -> list[str]:
        site = self.site
        assert isinstance(site, Vps) and site.users
        args = VpsGunicorn.argv(self)[len(site.as_user(site.users.web)) + 1 :]
        python = str(site.venv / "bin" / "python")
        return [*site.as_user(site.users.web), python, "-m", "gunicorn", *args]


def test_the_refusal_and_the_check_name_the_strategy_that_would_run(vps, users):
    """RELOAD_STRATEGY usr2, but the reload would fall back to hup: the deploy's refusal (once)
    and `deploy --check` name the sudoers line for HUP; the check polls the Unix socket."""
    site = vps
    step1_install_and_configure(site)
    step3_old_way_one_last_time(site)
    server = ModuleGunicorn(site, hooked=False, workers=2)
    server.config = "/dev/null"  # not the checkout's gunicorn.conf.py, which loads the hooks
    server.ready_path = "/"
    site.started.append(server)  # type: ignore[attr-defined]
    server.start()
    master, workers = server.master_pid(), set(server.worker_pids())
    assert owner(master) == users.web
    kill = shutil.which("kill", path=SECURE_PATH)
    hup_line = f"{users.deploy} ALL=({users.web}) NOPASSWD: {kill} -s HUP -- *"

    site.commit_release("v2")
    refused = site.manage("deploy", "--no-input", check=False)
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, show(refused)
    assert output.count(f"Gunicorn master {master} runs as user {users.web}") == 1, show(refused)
    assert output.count(hup_line) == 1, show(refused)
    assert "USR2" not in output and "Traceback" not in output
    assert server.master_pid() == master and set(server.worker_pids()) == workers

    checked = site.manage("deploy", "--check", "--json", check=False)
    assert checked.returncode == 2, show(checked)
    found = {f["name"]: f for f in json.loads(checked.stdout)["findings"]}
    assert not found["user"]["ok"] and found["user"]["fix"] == hup_line, found["user"]
    assert f"runs as user {users.web}" in found["user"]["detail"]
    assert not found["reload"]["ok"] and "strategy hup" in found["reload"]["detail"]
    healthz = found["HEALTHZ_URL"]
    assert healthz["ok"] and f"unix:{site.sock}:/healthz/ answers: release" in healthz["detail"]
    assert "Handling signal" not in server.log_text()  # nothing was signalled
