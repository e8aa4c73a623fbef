"""Small OS helpers: reading the end of a log without reading the log, waiting for a flock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from django_zerodeploy import osutil
from django_zerodeploy.gunicorn.probe import GunicornConfig
from django_zerodeploy.gunicorn.strategies.context import log_tail
from django_zerodeploy.osutil import flock_within


def _rchar() -> int:
    """Bytes this process has read through read(2) so far (the kernel's own count)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _big_log(path: Path, megabytes: int = 40) -> None:
    line = b"[INFO] Booting worker with pid: 12345 " + b"." * 60 + b"\n"
    with path.open("wb") as out:
        for _ in range(megabytes * 1024 * 1024 // len(line)):
            out.write(line)
        out.write(b"[ERROR] Exception in worker process\nImportError: no module named x\n")


def test_last_lines_reads_only_the_end(tmp_path):
    log = tmp_path / "error.log"
    _big_log(log)
    before = _rchar()
    text = osutil.last_lines(log, 2)
    read = _rchar() - before
    assert text == "[ERROR] Exception in worker process\nImportError: no module named x"
    assert read < 256 * 1024, f"read {read} bytes of a {log.stat().st_size}-byte log"


def test_last_lines_edge_cases(tmp_path):
    log = tmp_path / "short.log"
    log.write_bytes(b"one\ntwo\n\xff three\n")
    assert osutil.last_lines(log, 12) == "one\ntwo\n\ufffd three"
    assert osutil.last_lines(log, 1) == "\ufffd three"
    log.write_bytes(b"")
    assert osutil.last_lines(log, 5) == ""
    assert osutil.last_lines(tmp_path / "missing.log", 5) == ""
    # one line longer than the bound: its end is kept
    log.write_bytes(b"x" * 300_000 + b"END\n")
    assert osutil.last_lines(log, 3, max_bytes=1000).endswith("xEND")


def test_the_reload_failure_shows_the_logs_end_without_reading_it_all(tmp_path):
    log = tmp_path / "gunicorn-error.log"
    _big_log(log)

    class NoFacts:  # a master that recorded nothing: the config names the log
        facts = None

    before = _rchar()
    text = log_tail(NoFacts(), GunicornConfig(ok=True, errorlog=str(log)))  # type: ignore[arg-type]
    assert _rchar() - before < 256 * 1024
    assert text.endswith("ImportError: no module named x") and len(text.splitlines()) == 12


def test_flock_within_waits_once_told_then_gives_up(tmp_path):
    """Both lock waits (the deploy's and the reload's) use this: a held lock is waited for up to
    the given seconds, the caller told once; a free one is taken at once, untold."""
    path = tmp_path / "lock"
    holder = os.open(path, os.O_RDWR | os.O_CREAT)
    other = os.open(path, os.O_RDWR)
    told: list[bool] = []
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert not flock_within(other, 0.3, poll=0.05, on_wait=lambda: told.append(True))
        assert told == [True]
        assert not flock_within(other, 0)
        fcntl.flock(holder, fcntl.LOCK_UN)
        told.clear()
        assert flock_within(other, 5, on_wait=lambda: told.append(True))
        assert told == []
    finally:
        os.close(holder)
        os.close(other)
