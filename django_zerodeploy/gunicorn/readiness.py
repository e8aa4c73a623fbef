"""Workers' ready reports, kept in the runtime directory (outside the checkout).

A Gunicorn worker writes one small JSON file once it has loaded the app and the URLconf and its
smoke URLs answered (see ``gunicorn_conf.post_worker_init``): readiness is observed, never
guessed from a sleep. The reload command reads them to know when a new generation is ready and
which release it runs. Files of dead workers are ignored and pruned by the readers, and a report
only counts for the process that wrote it (a reused pid that has not reported yet is not ready).

The same workers also record the facts of their master's configuration (``MasterFacts``): the
running master's own view of ``daemon``, ``preload_app`` and so on, read by the reload command
without importing anything into the master.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import psutil

from ..conf import app_settings
from ..osutil import live_process, runtime_subdir, started_at, write_json_atomic
from .probe import GunicornSettings

# a report written this long before its process was created belongs to an older process
_CLOCK_SLACK = 1.0


@dataclass
class WorkerReport:
    """One worker's word that it is ready (or why it refused to boot)."""

    pid: int
    master_pid: int
    release: str
    booted_at: float
    ready: bool
    detail: str = ""


@dataclass
class MasterFacts(GunicornSettings):
    """A master's configuration as its workers saw it (``worker.cfg``), plus how to re-run it."""

    pid: int
    executable: str = ""
    argv: list[str] = field(default_factory=list)
    cwd: str = ""
    notify_socket: bool = False
    hooked: bool = True
    reexec_ok: bool = True  # a USR2 re-exec can start (see gunicorn_conf.pre_exec)


def workers_dir() -> Path:
    return runtime_subdir(app_settings.runtime_dir, "workers")


def masters_dir() -> Path:
    return runtime_subdir(app_settings.runtime_dir, "masters")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _build(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError:
        return None


# -- worker reports ----------------------------------------------------------------------------
def write_report(report: WorkerReport) -> None:
    """Write (or replace) the report of ``report.pid``."""
    write_json_atomic(workers_dir() / f"{report.pid}.json", asdict(report))


def remove_report(pid: int) -> None:
    with contextlib.suppress(OSError):
        (workers_dir() / f"{pid}.json").unlink()


def read_reports() -> list[WorkerReport]:
    """Every report on disk, alive or not (the readers below filter)."""
    reports = []
    for path in sorted(workers_dir().glob("[0-9]*.json")):
        data = _read_json(path)
        report = _build(WorkerReport, data) if data else None
        if report is not None:
            reports.append(report)
    return reports


def _belongs(report: WorkerReport, proc: psutil.Process, master_pid: int) -> bool:
    """The report was written by this very process, a child of ``master_pid``."""
    try:
        return proc.ppid() == master_pid and report.booted_at >= proc.create_time() - _CLOCK_SLACK
    except psutil.Error:
        return False


def reports_for_master(master_pid: int) -> list[WorkerReport]:
    """Reports of the live workers of ``master_pid`` (children of it that wrote them). Files
    of processes that are gone are removed on the way."""
    found = []
    for report in read_reports():
        proc = live_process(report.pid)
        if proc is None:
            if report.ready:  # keep refusals for the reload command to explain
                remove_report(report.pid)
            continue
        if report.master_pid == master_pid and _belongs(report, proc, master_pid):
            found.append(report)
    return found


def refusals_for_master(master_pid: int) -> list[WorkerReport]:
    """Workers of ``master_pid`` that refused to boot (they are gone by now)."""
    return [r for r in read_reports() if r.master_pid == master_pid and not r.ready]


def forget_master(master_pid: int) -> None:
    """Remove every file about ``master_pid`` (after it is gone)."""
    for report in read_reports():
        if report.master_pid == master_pid:
            remove_report(report.pid)
    for suffix in (".json", ".announced", ".proven"):
        with contextlib.suppress(OSError):
            (masters_dir() / f"{master_pid}{suffix}").unlink()


def mark_proven(master_pid: int) -> None:
    """Record that ``master_pid`` has had a ready worker (its generation is proven). Written
    atomically: an empty file left by a crash would read as "never proven" later."""
    started = started_at(master_pid)
    if started is not None and not is_proven(master_pid):
        write_json_atomic(masters_dir() / f"{master_pid}.proven", started)


def is_proven(master_pid: int) -> bool:
    """Has this very master (not an earlier process with its pid) had a ready worker?

    False only when the answer is known to be no: a runtime directory that cannot be read raises
    (OSError, or CommandFailure from ``app_settings.runtime_dir``), so a caller never takes
    "unknown" for "never"."""
    try:
        text = (masters_dir() / f"{master_pid}.proven").read_text()
    except FileNotFoundError:
        return False
    try:
        recorded = float(text)
    except ValueError:
        return False
    started = started_at(master_pid)
    return started is not None and abs(started - recorded) < 0.05


# -- master facts --------------------------------------------------------------------------------
def write_master_facts(facts: MasterFacts) -> None:
    write_json_atomic(masters_dir() / f"{facts.pid}.json", asdict(facts))


def read_master_facts(master_pid: int) -> MasterFacts | None:
    data = _read_json(masters_dir() / f"{master_pid}.json")
    return _build(MasterFacts, data) if data else None


def claim_announcement(master_pid: int) -> bool:
    """True for exactly one caller per master: the one that will announce it to systemd."""
    try:
        fd = os.open(
            masters_dir() / f"{master_pid}.announced", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640
        )
    except FileExistsError:
        return False
    os.close(fd)
    return True


def mark_announced(master_pid: int, message: str) -> None:
    """Record what was announced to systemd for ``master_pid`` (or drop the claim: ''). Written
    atomically over the claim, so the claim never disappears and no reader sees half of it."""
    path = masters_dir() / f"{master_pid}.announced"
    if message:
        write_json_atomic(path, message)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def announced(master_pid: int) -> str | None:
    """The announcement sent for ``master_pid`` (None while there is none, or it is underway:
    the claim is an empty file)."""
    try:
        text = (masters_dir() / f"{master_pid}.announced").read_text()
        message = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return message if isinstance(message, str) and message else None
