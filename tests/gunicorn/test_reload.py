"""``manage.py reload_gunicorn`` with the default usr2 strategy, against a real Gunicorn under a
real load: every reload keeps every request, and the new release serves afterwards.

The helpers at the top are shared by the other test_reload_*.py modules.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from django_zerodeploy import exit_codes
from django_zerodeploy.gunicorn.processes import child_masters, worker_processes
from django_zerodeploy.gunicorn.result import CLEANUP, LOCK
from tests.support.gunicorn import Gunicorn, wait_for
from tests.support.load import LoadReport
from tests.support.site import Site, git

pytestmark = pytest.mark.integration


# -- shared helpers --------------------------------------------------------------------------------
def started(gunicorn_factory, site: Site, **kwargs: object) -> Gunicorn:  # noqa: ANN001
    """Start Gunicorn and wait until every worker has reported ready. The fixture returns once
    one worker answers: a worker still booting would import the next release's files when the
    test checks them out."""
    server = gunicorn_factory(**kwargs)

    def ready() -> bool:
        master, pids = server.master_pid(), set(server.worker_pids())
        reported = set()
        for path in (site.runtime / "workers").glob("[0-9]*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if data["master_pid"] == master and data["ready"]:
                reported.add(data["pid"])
        return len(pids) >= server.workers and pids <= reported

    assert wait_for(ready, timeout=60), server.log_text()
    return server


def new_release(site: Site, name: str = "v2", files: dict[str, str | None] | None = None) -> str:
    """Commit a release in dev and pull it into the server checkout (as an operator would)."""
    sha = site.commit_release(name, files)
    git(site.server, "pull", "-q")
    return sha


def reload_cli(site: Site, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Run the command as a real subprocess with --json; returns (process, parsed result)."""
    ran = site.manage("reload_gunicorn", "--json", *args, check=False, timeout=240, **env)
    try:
        data = json.loads(ran.stdout)
    except ValueError:
        data = {}
    return ran, data


def under_load(server: Gunicorn, load_factory, clients: int = 3):  # noqa: ANN001, ANN201
    """Steady traffic on the site; what the test does next is the operation it measures, until
    finish() (a short pause between requests leaves the 2 shared cores some room for the new
    workers)."""
    load = load_factory(
        port=server.port, uds=server.uds, clients=clients, max_seconds=150, pause=0.005
    )
    load.start()
    load.begin()
    return load


def finish(load) -> LoadReport:  # noqa: ANN001
    """The operation ended: stop the load once it has served past it, and assert it covered it."""
    load.end()
    report = load.stop()
    report.assert_covered()
    return report


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_served(server: Gunicorn, site: Site, name: str, sha: str | None = None) -> None:
    assert server.served_releases(6) == {name}
    if sha:
        assert server.healthz()["releaseId"] == sha


def gunicorn_log(server: Gunicorn) -> str:
    return server.log_text()


_RECORDER = r"""
import signal, sys, time
path = sys.argv[1]
def record(number, frame):
    with open(path, "a") as handle:
        handle.write(signal.Signals(number).name + "\n")
for name in ("SIGHUP", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGWINCH", "SIGINT", "SIGQUIT", "SIGTTIN", "SIGTTOU"):
    signal.signal(getattr(signal, name), record)
open(path + ".ready", "w").close()
while True:
    time.sleep(0.2)
"""


class SignalRecorder:
    """A process that is not Gunicorn and writes down every signal it gets."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / f"signals-{time.monotonic_ns()}.txt"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RECORDER, str(self.log)], start_new_session=True
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + 20
        while not Path(str(self.log) + ".ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def received(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(name="signal_recorder")
def signal_recorder_fixture(tmp_path: Path):  # noqa: ANN201
    """Start non-Gunicorn processes that record the signals they receive; killed at teardown."""
    made: list[SignalRecorder] = []

    def make() -> SignalRecorder:
        made.append(SignalRecorder(tmp_path))
        return made[-1]

    yield make
    for recorder in made:
        recorder.stop()


# -- the good path -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mode",
    [pytest.param("foreground-tcp", marks=pytest.mark.matrix), "daemon-tcp", "foreground-uds"],
)
def test_usr2_reload_keeps_every_request_and_serves_the_new_release(
    site, gunicorn_factory, load_factory, mode
):
    server = started(
        gunicorn_factory,
        site,
        workers=2,
        daemon=mode.startswith("daemon"),
        uds=mode.endswith("uds"),
    )
    old_master = server.master_pid()
    sha = new_release(site, "v2")
    socket_inode = os.stat(server.uds).st_ino if server.uds else None

    load = under_load(server, load_factory)
    ran, result = reload_cli(site)
    report = finish(load)

    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    assert result["ok"] and result["strategy"] == "usr2"
    assert report.failed == 0, report.summary()
    assert report.markers["v2"] > 0, report.summary()  # the new generation took traffic under load
    assert_served(server, site, "v2", sha)
    new_master = server.master_pid()
    assert new_master == result["new_master_pid"] != old_master
    assert not alive(old_master)
    assert int(site.pidfile.read_text()) == new_master
    assert not Path(f"{site.pidfile}.2").exists()
    assert result["release"] == sha and result["workers_ready"] == result["workers_expected"] == 2
    names = [p["name"] for p in result["phases"]]
    assert names[:3] == ["found master", "preflight", "signal"]
    assert {"new master", "new generation ready", "old retired", "promoted"} <= set(names)
    if mode.startswith("daemon"):
        assert any("WINCH" in p["detail"] for p in result["phases"])
    if server.uds:  # the listening socket file survived the switch
        assert stat.S_ISSOCK(os.stat(server.uds).st_mode)
        assert os.stat(server.uds).st_ino == socket_inode
    # nothing of the reload lives in the checkout
    assert git(site.server, "status", "--porcelain", "--untracked-files=all") == ""


def test_slow_request_in_flight_completes_and_plain_output_has_a_line_per_phase(
    site, gunicorn_factory, load_factory, signal_recorder
):
    """A 5 s request that an old worker is serving when the reload starts completes with 200.
    Also: a stale ``.2`` pidfile naming a live, unrelated process is removed (Gunicorn would
    refuse to start the new master over it) and that process gets no signal."""
    server = started(gunicorn_factory, site, workers=2)
    sha = new_release(site, "v2")
    bystander = signal_recorder()
    Path(f"{site.pidfile}.2").write_text(f"{bystander.pid}\n")
    slow: dict = {}

    def request() -> None:
        status, headers, body = server.get("/slow/?s=5", timeout=60)
        slow.update(status=status, release=headers.get("x-example-release"), body=body)

    load = under_load(server, load_factory, clients=2)
    thread = threading.Thread(target=request)
    thread.start()
    time.sleep(0.5)  # the slow request is in an old worker now
    ran = site.manage("reload_gunicorn", check=False, timeout=240)
    thread.join(60)
    report = finish(load)

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert slow == {"status": 200, "release": "v1", "body": b"release=v1 slept=5.0\n"}
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", sha)
    lines = ran.stdout.strip().splitlines()
    assert lines[0].startswith("found master: pid ")
    assert [line.split(":")[0] for line in lines[1:5]] == [
        "preflight",
        "cleanup",
        "signal",
        "new master",
    ]
    assert "removed stale" in lines[2]
    assert any(line.startswith("new generation ready: 2/2 workers") for line in lines)
    assert any(line.startswith("old retired: TERM") for line in lines)
    assert all(line.endswith(" s]") for line in lines[:-1])  # every phase is timed
    assert lines[-1].startswith("Reloaded: master")
    assert bystander.alive() and bystander.received() == []


def test_usr2_works_with_preload_app_and_hup_is_refused(site, gunicorn_factory, load_factory):
    """preload_app: HUP would fork new workers from the old code (Gunicorn #2449): refused with
    exit 1 and no signal; USR2 re-executes the master and loads the new code."""
    server = started(gunicorn_factory, site, workers=2, preload=True)
    master = server.master_pid()
    workers = set(server.worker_pids())
    sha = new_release(site, "v2")
    load = under_load(server, load_factory)

    ran, result = reload_cli(site, "--strategy", "hup")
    assert ran.returncode == exit_codes.FAILED, ran.stdout + ran.stderr
    assert "preload_app" in result["message"] and "usr2" in result["message"]
    assert server.master_pid() == master and set(server.worker_pids()) == workers  # untouched
    assert_served(server, site, "v1")

    ran, result = reload_cli(site)
    report = finish(load)
    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", sha)
    assert "Handling signal: hup" not in gunicorn_log(server)


OWN_HOOK_CONFIG = """\
import os
from pathlib import Path

from django_zerodeploy.gunicorn_conf import *  # noqa: F401,F403
from django_zerodeploy.gunicorn_conf import with_readiness


@with_readiness
def post_worker_init(worker):
    # the project's own hook: records, per worker, whether ours had already reported ready
    Path(os.environ["HOOK_MARKS"], str(os.getpid())).write_text(
        str(getattr(worker, "zerodeploy_ready", False))
    )
"""


def test_a_project_hook_wrapped_with_readiness_runs_after_ours(
    site, gunicorn_factory, load_factory
):
    """A gunicorn.conf.py with its own post_worker_init, wrapped as docs/reload.md says: each
    worker runs our readiness hook and then the project's, and usr2 reloads still work."""
    config = site.root / "own-hook.conf.py"  # outside the checkout: the tree stays clean
    config.write_text(OWN_HOOK_CONFIG)
    marks = site.root / "hook-marks"
    marks.mkdir()
    server = started(gunicorn_factory, site, config=str(config), env={"HOOK_MARKS": str(marks)})
    first = set(server.worker_pids())
    assert {p.name: p.read_text() for p in marks.iterdir()} == {str(w): "True" for w in first}

    sha = new_release(site, "v2")
    load = under_load(server, load_factory)
    ran, result = reload_cli(site)
    report = finish(load)
    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", sha)
    second = set(server.worker_pids())
    assert len(second) == 2 and not second & first
    assert {p.name: p.read_text() for p in marks.iterdir()} == {
        str(w): "True" for w in first | second
    }


def test_two_reloads_at_once_run_one_after_the_other(site, gunicorn_factory, load_factory):
    """The second waits for the lock, then reloads the master the first one left: never two
    USR2 at the same time."""
    server = started(gunicorn_factory, site, workers=2)
    first_master = server.master_pid()
    sha = new_release(site, "v2")
    load = under_load(server, load_factory)
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "reload_gunicorn", "--json"],
            cwd=site.server,
            env=site.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    report = finish(load)

    codes = [p.returncode for p in procs]
    assert codes == [0, 0], outputs
    results = sorted((json.loads(out) for out, _ in outputs), key=lambda r: r["duration"])
    early, late = results
    assert early["old_master_pid"] == first_master
    assert late["old_master_pid"] == early["new_master_pid"]  # it reloaded what the first left
    assert late["phases"][0]["name"] == LOCK
    assert late["new_master_pid"] == server.master_pid()
    assert "USR2 signal ignored" not in gunicorn_log(server)
    assert report.failed == 0, report.summary()
    assert_served(server, site, "v2", sha)


def test_a_leftover_new_master_is_reaped_before_the_usr2_that_replaces_it(
    site, gunicorn_factory, load_factory
):
    """An interrupted reload left an unpromoted new master. Gunicorn ignores a USR2 while the
    child of its previous one is unreaped ("Child exists"), and reaps only when its loop gets
    to the SIGCHLD: the old master is held stopped (SIGSTOP) until well after the leftover
    exited, so a USR2 sent on its exit alone would be ignored and no new master would come."""
    server = started(gunicorn_factory, site, workers=2)
    old = server.master_pid()
    os.kill(old, signal.SIGUSR2)  # the interrupted reload's new master, never promoted
    assert wait_for(lambda: _child_master_with_workers(old), timeout=60), server.log_text()
    leftover = _child_master_with_workers(old)
    sha = new_release(site, "v2")

    def hold_then_resume() -> None:
        wait_for(lambda: not alive(leftover), timeout=60)  # exited, a zombie: not reaped yet
        time.sleep(0.5)
        os.kill(old, signal.SIGCONT)

    load = under_load(server, load_factory)
    os.kill(old, signal.SIGSTOP)
    resume = threading.Thread(target=hold_then_resume)
    resume.start()
    try:
        ran, result = reload_cli(site, "--timeout", "30")
    finally:
        os.kill(old, signal.SIGCONT)
        resume.join(70)
    report = finish(load)

    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr + server.log_text()[-3000:]
    assert report.failed == 0, report.summary()
    cleanup = next(p["detail"] for p in result["phases"] if p["name"] == CLEANUP)
    assert f"leftover new master {leftover} stopped" in cleanup, cleanup
    assert not psutil.pid_exists(leftover)  # reaped, not only exited
    assert server.master_pid() == result["new_master_pid"] not in (old, leftover)
    assert_served(server, site, "v2", sha)


def _child_master_with_workers(master: int) -> int | None:
    for child in child_masters(psutil.Process(master)):
        if len(worker_processes(child)) >= 2:
            return child.pid
    return None
