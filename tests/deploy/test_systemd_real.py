"""``deploy`` under a real systemd: systemd 252 boots as PID 1 of a ``systemd-nspawn`` container
(tests/support/systemd_nspawn.py; one boot for the whole module), Gunicorn runs as a service
of it, ``manage.py deploy`` runs inside the container as the operator would, and the load comes
from the host over loopback (the container shares the host's network).

Two units: the one Gunicorn's documentation gives (``Type=notify``, ``NotifyAccess=main``,
``ExecReload=/bin/kill -s HUP $MAINPID``, running ``gunicorn myproject.wsgi`` without any config
of ours; bound to a TCP port instead of the docs' socket activation, so that the host can load
it), and the one docs/reload.md recommends (``NotifyAccess=all``, our hooks, a pidfile). For
each: a good release with every strategy that applies, a broken one, then ``systemctl reload``
and ``systemctl restart``; every deploy under load with 0 failed requests, and afterwards the
release that serves, the unit ``active`` and its ``MainPID`` the live Gunicorn master. And
``deploy --check`` reading both units through ``systemctl show``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from django_zerodeploy import exit_codes
from tests.support import systemd_nspawn
from tests.support.gunicorn import Gunicorn, free_port, wait_for
from tests.support.site import REPO_ROOT, VENV_BIN, Site, git, make_site

# the ceiling counts the module's container fixture in the first test: on a fresh machine that
# builds the root file system with debootstrap (about 2 minutes) before booting it
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

WORK = Path("/var/lib/django-zerodeploy-tests")  # not /tmp: the docs' unit has PrivateTmp=true
BROKEN_SETTINGS = "raise ImportError('broken settings in this release')\n"


@pytest.fixture(scope="module")
def container() -> Iterator[systemd_nspawn.Container]:
    why = systemd_nspawn.missing_requirement()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"a real systemd cannot boot here: {why}")
        pytest.skip(f"a real systemd cannot boot here: {why}")
    systemd_nspawn.ensure_rootfs()
    folder = WORK / f"run-{uuid.uuid4().hex[:10]}"
    folder.mkdir(parents=True)
    ro = {REPO_ROOT, Path(sys.prefix), Path(sys.base_prefix)}
    ro = [p for p in ro if not any(q != p and q in p.parents for q in ro)]
    box = systemd_nspawn.Container(
        f"zd-{uuid.uuid4().hex[:8]}", binds=[folder], ro_binds=sorted(ro), log=folder / "nspawn.log"
    )
    box.folder = folder  # type: ignore[attr-defined]
    try:
        yield box.boot()
    finally:
        box.poweroff()
        shutil.rmtree(folder, ignore_errors=True)


# -- the two units -------------------------------------------------------------------------------
def _environment(site: Site, pidfile: str) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "exampleproject.settings",
        "EXAMPLE_DB_PATH": str(site.db_path),
        "EXAMPLE_STATIC_ROOT": str(site.static_root),
        "ZERODEPLOY_RUNTIME_DIR": str(site.runtime),
        "ZERODEPLOY_HEALTHZ_URL": f"http://127.0.0.1:{site.port}/healthz/",
        "ZERODEPLOY_PIDFILE": pidfile,
    }
    return env


def docs_unit(site: Site) -> str:
    """Gunicorn's documented unit (docs/deploy.rst), with this project's command line."""
    env = "\n".join(f"Environment={k}={v}" for k, v in _environment(site, "").items())
    return f"""[Unit]
Description=gunicorn daemon
After=network.target

[Service]
Type=notify
NotifyAccess=main
RuntimeDirectory=gunicorn
WorkingDirectory={site.server}
{env}
ExecStart={VENV_BIN}/gunicorn exampleproject.wsgi -w 3 -b 127.0.0.1:{site.port}
ExecReload=/bin/kill -s HUP $MAINPID
KillMode=mixed
TimeoutStopSec=5
PrivateTmp=true

[Install]
WantedBy=multi-user.target
"""


def our_unit(site: Site, name: str) -> str:
    """The unit docs/reload.md recommends (root inside the container, so no User=)."""
    pidfile = f"/run/{name}/gunicorn.pid"
    env = "\n".join(f"Environment={k}={v}" for k, v in _environment(site, pidfile).items())
    return f"""[Unit]
Description={name} (Gunicorn)
After=network.target

[Service]
Type=notify
NotifyAccess=all
WorkingDirectory={site.server}
RuntimeDirectory={name}
{env}
ExecStart={VENV_BIN}/gunicorn -c {site.server}/gunicorn.conf.py --pid {pidfile} -w 3 -b 127.0.0.1:{site.port}
ExecReload=/bin/kill -s HUP $MAINPID
KillMode=mixed
TimeoutStopSec=40

[Install]
WantedBy=multi-user.target
"""


# -- helpers -------------------------------------------------------------------------------------
class Service:
    """One Gunicorn unit in the container, and a client for it from the host."""

    def __init__(self, box: systemd_nspawn.Container, site: Site, unit: str, text: str) -> None:
        self.box, self.site, self.unit = box, site, unit
        self.client = Gunicorn(site)  # only for requests from the host; never started here
        box.write(f"/run/systemd/system/{unit}", text)
        box.systemctl("daemon-reload")

    def start(self) -> None:
        self.box.systemctl("start", self.unit)
        assert wait_for(self.serving, timeout=60), self.journal()
        warm_up(self.client)

    def serving(self) -> bool:
        main = self.main_pid()
        return bool(main) and len(self.workers(main)) == 3 and self.client.get("/")[0] == 200

    def main_pid(self) -> int:
        return int(self.box.show(self.unit, "MainPID") or 0)

    def workers(self, main: int) -> list[psutil.Process]:
        host = self.box.host_pid(main)
        return psutil.Process(host).children() if host else []

    def assert_healthy(self, main: int) -> None:
        """Active, MainPID the live master (a Gunicorn process with 3 workers in the project)."""
        assert self.box.show(self.unit, "ActiveState") == "active", self.journal()
        assert self.main_pid() == main, self.journal()
        proc = psutil.Process(self.box.host_pid(main))
        assert "gunicorn" in " ".join(proc.cmdline()) and Path(proc.cwd()) == self.site.server
        assert len(proc.children()) == 3

    def deploy(self, load_factory, **env: str):  # noqa: ANN001, ANN201
        """``manage.py deploy`` inside the container while the host loads the site."""
        environment = {**_environment(self.site, env.pop("pidfile", "")), **env}
        environment["PATH"] = f"{VENV_BIN}:{systemd_nspawn._PATH}"
        load = load_factory(port=self.site.port, clients=3, max_seconds=240, timeout=30)
        load.start()
        try:
            with load.operation():
                ran = self.box.run(
                    str(VENV_BIN / "python"),
                    "manage.py",
                    "deploy",
                    "--no-input",
                    env=environment,
                    cwd=self.site.server,
                    check=False,
                )
        finally:
            report = load.stop()
        report.assert_covered()
        return ran, report

    def journal(self) -> str:
        ran = self.box.run("journalctl", "-u", self.unit, "--no-pager", "-n", "40", check=False)
        return ran.stdout[-4000:]


def warm_up(client: Gunicorn) -> None:
    """Each of the 3 sync workers serves one slow page, so each has loaded the URLconf."""
    with ThreadPoolExecutor(3) as pool:
        assert set(pool.map(lambda _: client.get("/slow/?s=1")[0], range(3))) == {200}


def served(service: Service, name: str, sha: str) -> None:
    assert service.client.served_releases(6) == {name}
    assert service.client.healthz()["releaseId"] == sha


def new_site(box: systemd_nspawn.Container, name: str, hooked: bool) -> Site:
    site = make_site(box.folder / name)  # type: ignore[attr-defined]
    site.port = free_port()
    if not hooked:  # the user's project: no gunicorn.conf.py of ours
        site.commit_release("v1", {"gunicorn.conf.py": None}, message="No Gunicorn config")
        git(site.server, "pull", "-q")
    return site


def out(ran) -> str:  # noqa: ANN001
    return f"exit {ran.returncode}\n{ran.stdout[-5000:]}\n{ran.stderr[-3000:]}"


def later_reload_and_restart(service: Service, name: str, sha: str, load_factory) -> None:  # noqa: ANN001
    main = service.main_pid()
    load = load_factory(port=service.site.port, clients=3, max_seconds=120, timeout=30).start()
    with load.operation():
        service.box.systemctl("reload", service.unit)
        assert wait_for(lambda: service.serving() and service.main_pid() == main, timeout=60)
        time.sleep(1)  # the old workers are gone within the graceful timeout
    report = load.stop()
    report.assert_covered()
    assert report.failed == 0, report.summary()
    service.assert_healthy(main)
    served(service, name, sha)

    service.box.systemctl("restart", service.unit)  # a restart drops requests: no load here
    assert wait_for(lambda: service.serving() and service.main_pid() != main, timeout=60)
    service.assert_healthy(service.main_pid())
    served(service, name, sha)


# -- the tests -----------------------------------------------------------------------------------
def test_gunicorn_docs_unit_deploys_through_systemctl_reload(container, load_factory):
    """No hook, NotifyAccess=main: the default usr2 cannot hand MAINPID over (Gunicorn #2856),
    so deploy reloads through ``systemctl reload`` (the unit's HUP), behind the preflight."""
    site = new_site(container, "docs", hooked=False)
    service = Service(container, site, "gunicorn.service", docs_unit(site))
    service.start()
    main = service.main_pid()

    for name, strategy in (("v2", "usr2"), ("v3", "systemd")):
        sha = site.commit_release(name)
        ran, report = service.deploy(load_factory, ZERODEPLOY_RELOAD_STRATEGY=strategy)
        assert ran.returncode == exit_codes.OK, out(ran) + service.journal()
        assert re.search(r"reload +ok +[\d.]+ s +systemd:", ran.stdout), ran.stdout
        assert "from django_zerodeploy.gunicorn_conf import *" in ran.stdout
        assert report.failed == 0, report.summary()
        service.assert_healthy(main)  # reloaded in place: the same MainPID
        served(service, name, sha)

    site.commit_release("v4", {"exampleproject/settings.py": BROKEN_SETTINGS})
    ran, report = service.deploy(load_factory)
    assert ran.returncode == exit_codes.FAILED, out(ran)
    assert report.failed == 0, report.summary()
    service.assert_healthy(main)
    served(service, "v3", sha)

    later_reload_and_restart(service, "v3", sha, load_factory)


def test_recommended_unit_deploys_with_usr2_and_the_mainpid_handover(container, load_factory):
    """Our unit (NotifyAccess=all, the hooks): usr2 hands MAINPID to the new master, which
    systemd then watches; ``--strategy systemd`` reloads in place; a broken release is refused."""
    name = "site"
    site = new_site(container, name, hooked=True)
    pidfile = f"/run/{name}/gunicorn.pid"
    service = Service(container, site, f"{name}.service", our_unit(site, name))
    service.start()
    main = service.main_pid()

    sha = site.commit_release("v2")
    ran, report = service.deploy(load_factory, pidfile=pidfile)
    assert ran.returncode == exit_codes.OK, out(ran) + service.journal()
    assert re.search(r"reload +ok +[\d.]+ s +usr2:", ran.stdout), ran.stdout
    assert report.failed == 0, report.summary()
    new_main = service.main_pid()
    assert new_main != main
    service.assert_healthy(new_main)  # systemd follows the new master
    served(service, "v2", sha)

    sha = site.commit_release("v3")
    ran, report = service.deploy(
        load_factory, pidfile=pidfile, ZERODEPLOY_RELOAD_STRATEGY="systemd"
    )
    assert ran.returncode == exit_codes.OK, out(ran) + service.journal()
    assert report.failed == 0, report.summary()
    service.assert_healthy(new_main)
    served(service, "v3", sha)

    site.commit_release("v4", {"exampleproject/settings.py": BROKEN_SETTINGS})
    ran, report = service.deploy(load_factory, pidfile=pidfile)
    assert ran.returncode == exit_codes.FAILED, out(ran)
    assert report.failed == 0, report.summary()
    service.assert_healthy(new_main)
    served(service, "v3", sha)

    later_reload_and_restart(service, "v3", sha, load_factory)


def _check(service: Service, **env: str) -> tuple[int, dict[str, dict]]:
    """``manage.py deploy --check --json`` inside the container, as the operator runs it."""
    import json

    environment = {**_environment(service.site, env.pop("pidfile", "")), **env}
    environment["PATH"] = f"{VENV_BIN}:{systemd_nspawn._PATH}"
    ran = service.box.run(
        str(VENV_BIN / "python"),
        "manage.py",
        "deploy",
        "--check",
        "--json",
        env=environment,
        cwd=service.site.server,
        check=False,
    )
    data = json.loads(ran.stdout)
    return ran.returncode, {f["name"]: f for f in data["findings"]}


def test_deploy_check_reads_the_running_units(container):
    """``deploy --check`` reads each unit through ``systemctl show``: the documented unit's
    NotifyAccess=main and its PrivateTmp are reported (with RUNTIME_DIR outside /tmp the
    processes still meet), the recommended unit passes; both would deploy (exit 0)."""
    docs_site = new_site(container, "check-docs", hooked=False)
    docs_text = docs_unit(docs_site).replace("RuntimeDirectory=gunicorn", "RuntimeDirectory=chk")
    docs = Service(container, docs_site, "chk-docs.service", docs_text)
    ours_site = new_site(container, "check-site", hooked=True)
    pidfile = "/run/chk-site/gunicorn.pid"
    ours = Service(container, ours_site, "chk-site.service", our_unit(ours_site, "chk-site"))
    docs.start()
    ours.start()
    try:
        code, found = _check(docs)
        assert found["systemd unit"]["ok"], found["systemd unit"]
        assert "chk-docs.service" in found["systemd unit"]["detail"]
        assert not found["unit NotifyAccess"]["ok"]
        assert found["unit NotifyAccess"]["fix"].startswith("NotifyAccess=all")
        assert found["unit Type"]["ok"] and found["unit KillMode"]["ok"]
        assert found["unit PrivateTmp"]["ok"]  # RUNTIME_DIR is configured outside /tmp
        assert found["unit PrivateTmp"]["detail"].startswith("yes")
        assert found["runtime directory"]["ok"], found["runtime directory"]
        assert not found["Gunicorn hook"]["ok"]
        assert code == exit_codes.OK, found

        code, found = _check(ours, pidfile=pidfile)
        assert code == exit_codes.OK, found
        for name in ("unit Type", "unit NotifyAccess", "unit ExecReload", "Gunicorn hook"):
            assert found[name]["ok"], found[name]
        assert "chk-site.service" in found["systemd unit"]["detail"]  # found from the cgroup
    finally:
        for service in (docs, ours):
            service.box.systemctl("stop", service.unit, check=False)
