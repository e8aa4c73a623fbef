"""Ready reports count only for the live process that wrote them, a child of the master asked
about; they live in the runtime directory, never in the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from django_zerodeploy.conf import app_settings
from django_zerodeploy.gunicorn import readiness
from django_zerodeploy.gunicorn.readiness import MasterFacts, WorkerReport


@pytest.fixture
def runtime(settings, tmp_path: Path) -> Path:
    settings.ZERODEPLOY = {"RUNTIME_DIR": str(tmp_path / "run")}
    return tmp_path / "run"


@pytest.fixture
def children():  # noqa: ANN201
    """Child processes of this test process, standing in for a master's workers."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(count: int = 1) -> list[int]:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        return [p.pid for p in procs[-count:]]

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _report(
    pid: int, master: int, ready: bool = True, release: str = "abc", detail: str = ""
) -> WorkerReport:
    return WorkerReport(
        pid=pid,
        master_pid=master,
        release=release,
        booted_at=time.time(),
        ready=ready,
        detail=detail,
    )


def test_reports_round_trip_and_only_live_children_of_the_master_count(runtime, children):
    me = os.getpid()
    a, b = children(2)
    readiness.write_report(_report(a, me))
    readiness.write_report(_report(b, me, release="def"))
    readiness.write_report(_report(1, me))  # pid 1 is alive but not our child
    assert (runtime / "workers" / f"{a}.json").is_file()
    assert {r.pid for r in readiness.read_reports()} == {a, b, 1}
    found = {r.pid: r for r in readiness.reports_for_master(me)}
    assert set(found) == {a, b}
    assert found[b].release == "def" and found[a].ready
    assert readiness.reports_for_master(12345678) == []


def test_dead_workers_are_pruned_but_refusals_are_kept(runtime, children):
    me = os.getpid()
    (pid,) = children(1)
    readiness.write_report(_report(pid, me))
    readiness.write_report(_report(pid + 1_000_000, me))  # no such process
    readiness.write_report(
        _report(pid + 1_000_001, me, ready=False, detail="smoke URL failed: / answered 500")
    )
    assert [r.pid for r in readiness.reports_for_master(me)] == [pid]
    assert not (runtime / "workers" / f"{pid + 1_000_000}.json").exists()
    refusals = readiness.refusals_for_master(me)
    assert [(r.pid, r.detail) for r in refusals] == [
        (pid + 1_000_001, "smoke URL failed: / answered 500")
    ]
    readiness.forget_master(me)
    assert readiness.read_reports() == []


def test_a_report_older_than_its_process_is_not_believed(runtime, children):
    """The pid was reused: the report came from an earlier process with the same pid."""
    me = os.getpid()
    (pid,) = children(1)
    old = _report(pid, me)
    old.booted_at = time.time() - 3600
    readiness.write_report(old)
    assert readiness.reports_for_master(me) == []


def test_master_facts_and_the_single_announcement(runtime):
    facts = MasterFacts(
        pid=4242,
        executable="/venv/bin/python",
        argv=["gunicorn", "app:app"],
        daemon=True,
        workers=3,
    )
    readiness.write_master_facts(facts)
    assert readiness.read_master_facts(4242) == facts
    assert readiness.read_master_facts(4243) is None
    assert readiness.claim_announcement(4242) is True
    assert readiness.claim_announcement(4242) is False  # exactly one worker announces
    assert readiness.announced(4242) is None  # claimed, not sent yet
    readiness.mark_announced(4242, "MAINPID=4242\nREADY=1")
    assert readiness.announced(4242) == "MAINPID=4242\nREADY=1"
    readiness.forget_master(4242)
    assert readiness.read_master_facts(4242) is None and readiness.announced(4242) is None


def test_the_default_runtime_dir_is_outside_the_checkout(settings, tmp_path):
    settings.ZERODEPLOY = {"REPO_DIR": str(tmp_path / "repo")}
    (tmp_path / "repo").mkdir()
    folder = readiness.workers_dir()
    assert folder.is_dir() and folder.parent == app_settings.runtime_dir
    assert tmp_path / "repo" not in folder.parents


def test_an_empty_proven_marker_is_rewritten(runtime):
    """An older version wrote the marker in place; a crash left it empty, and it was never
    rewritten: every later refusal would have halted a serving master."""
    marker = readiness.masters_dir() / f"{os.getpid()}.proven"
    marker.write_text("")
    assert not readiness.is_proven(os.getpid())
    readiness.mark_proven(os.getpid())
    assert readiness.is_proven(os.getpid())


def test_announcements_are_written_whole(runtime):
    assert readiness.claim_announcement(77)
    assert readiness.announced(77) is None  # claimed, not sent
    readiness.mark_announced(77, "MAINPID=77\nREADY=1")
    assert readiness.announced(77) == "MAINPID=77\nREADY=1"
    assert not readiness.claim_announcement(77)  # the claim never disappeared
    assert not list(readiness.masters_dir().glob(".tmp-*"))
