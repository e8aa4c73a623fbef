"""Benchmark Gunicorn reloads under steady load: ``reload_gunicorn`` (usr2, hup) against a plain
``kill -HUP`` and a stop-and-start, in the same run, on the same site.

The example site runs with a 1 s app boot delay (EXAMPLE_BOOT_DELAY) and 3 sync workers; a
bounded loopback load (tests/support/load.py) runs the whole time. Before the reloads a steady
window measures the p99 latency with no reload. Then, for each method, ``--reloads`` times: a new
release is committed and pulled, the reload runs, and a watcher records when the old generation
(its workers, and its master for usr2 and stop-and-start) has gone. For each method:

- failed requests (any answer but 200, refused or reset connections) during its reloads;
- worst request latency in the reload windows, next to the steady p99;
- time from the start of the command (or signal) to the old generation retired;
- whether the new release served afterwards (X-Example-Release).

    .venv/bin/python benchmarks/reload_benchmark.py [--reloads 20] [--clients 4]
        [--methods usr2,hup,kill-hup,restart] [--json out.json]

Everything lives in a temporary directory; nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gunicorn import Gunicorn, wait_for  # noqa: E402
from tests.support.load import Hit, LoadGenerator  # noqa: E402
from tests.support.site import Site, git, make_site  # noqa: E402

BOOT_DELAY = "1"
WORKERS = 3
METHODS = ("usr2", "hup", "kill-hup", "restart")
SETTLE = 0.5  # seconds of traffic kept in a reload's window after the old generation left
METHOD_BUDGET = 240.0  # seconds of reloads per method at most (fewer reloads are reported)


@dataclass
class Trial:
    method: str
    ok: bool
    seconds_to_retired: float
    window: tuple[float, float]
    note: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    worst_ms: float = 0.0
    worst_at_s: float = 0.0  # when the slowest request of this reload started, after the command


@dataclass
class MethodResult:
    method: str
    reloads: int
    succeeded: int
    requests: int
    failed: int
    worst_latency_ms: float
    p99_in_windows_ms: float
    retired_median_s: float
    retired_max_s: float
    notes: list[str] = field(default_factory=list)
    phase_medians_s: dict[str, float] = field(default_factory=dict)
    worst_per_reload_ms: list[float] = field(default_factory=list)
    worst_at_s: list[float] = field(default_factory=list)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ready_workers(site: Site, master: int | None) -> set[int]:
    found = set()
    for path in (site.runtime / "workers").glob("[0-9]*.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            if data["master_pid"] == master and data["ready"] and _alive(data["pid"]):
                found.add(data["pid"])
    return found


def _settled(server: Gunicorn, site: Site) -> bool:
    """Every worker of the current master has reported ready."""
    master = server.master_pid()
    pids = set(server.worker_pids(master))
    return len(pids) == WORKERS and pids <= _ready_workers(site, master)


class Watcher:
    """Polls until every pid of the old generation has gone; records when."""

    def __init__(self, pids: set[int]) -> None:
        self.pids = set(pids)
        self.gone_at: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if not any(_alive(pid) for pid in self.pids):
                self.gone_at = time.monotonic()
                return
            time.sleep(0.05)  # coarse on purpose: this process also runs the load's threads

    def wait(self, timeout: float = 180) -> float | None:
        self._thread.join(timeout)
        return self.gone_at


def _release(site: Site, number: int) -> str:
    name = f"r{number}"
    site.commit_release(name)
    git(site.server, "pull", "-q")
    return name


def _command(site: Site, strategy: str) -> tuple[bool, str, dict[str, float]]:
    """Run reload_gunicorn; returns (ok, message, seconds per phase incl. 'startup')."""
    started = time.monotonic()
    ran = site.manage("reload_gunicorn", "--strategy", strategy, "--json", check=False, timeout=300)
    wall = time.monotonic() - started
    try:
        data = json.loads(ran.stdout)
    except ValueError:
        return False, (ran.stderr or ran.stdout)[-300:], {}
    phases = {p["name"]: p["seconds"] for p in data.get("phases", [])}
    phases["startup and exit"] = round(wall - data.get("duration", wall), 3)
    return bool(data.get("ok")), data.get("message", ""), phases


def trial(method: str, server: Gunicorn, site: Site, number: int) -> tuple[Trial, Gunicorn]:
    """One reload with ``method``; returns the trial and the server object now serving."""
    name = _release(site, number)
    assert wait_for(lambda: _settled(server, site), timeout=60), "workers never settled"
    master = server.master_pid()
    assert master is not None
    old = set(server.worker_pids(master))
    if method in ("usr2", "restart"):
        old.add(master)
    watcher = Watcher(old)
    started = time.monotonic()
    note = ""
    phases: dict[str, float] = {}
    if method in ("usr2", "hup"):
        ok, note, phases = _command(site, method)
    elif method == "kill-hup":
        os.kill(master, signal.SIGHUP)
        ok = bool(
            wait_for(
                lambda: _settled(server, site) and not (set(server.worker_pids()) & old),
                timeout=120,
            )
        )
    else:  # stop and start: what a plain `systemctl restart` does
        server.stop()
        server = Gunicorn(site, workers=WORKERS, env={"EXAMPLE_BOOT_DELAY": BOOT_DELAY})
        server.start(timeout=120)
        ok = True
    gone = watcher.wait()
    ok = (
        ok
        and wait_for(lambda: _settled(server, site), timeout=60)
        and server.served_releases(6) == {name}
    )
    retired = (gone - started) if gone else float("nan")
    end = max(gone or started, time.monotonic()) + SETTLE
    time.sleep(SETTLE)
    return Trial(method, bool(ok), retired, (started, end), note if not ok else "", phases), server


def summarize(method: str, trials: list[Trial], hits: list[Hit]) -> MethodResult:
    inside = [h for h in hits if any(t.window[0] <= h.started <= t.window[1] for t in trials)]
    for t in trials:
        mine = [h for h in hits if t.window[0] <= h.started <= t.window[1]]
        if mine:
            worst = max(mine, key=lambda h: h.latency)
            t.worst_ms, t.worst_at_s = (
                round(worst.latency * 1000, 1),
                round(worst.started - t.window[0], 2),
            )
    names = [n for t in trials for n in t.phases]
    phase_medians = {
        n: round(statistics.median(t.phases[n] for t in trials if n in t.phases), 2)
        for n in dict.fromkeys(names)
    }
    latencies = sorted(h.latency for h in inside) or [0.0]
    retired = [t.seconds_to_retired for t in trials if t.seconds_to_retired == t.seconds_to_retired]
    return MethodResult(
        method=method,
        reloads=len(trials),
        succeeded=sum(t.ok for t in trials),
        requests=len(inside),
        failed=sum(1 for h in inside if h.status != 200),
        worst_latency_ms=round(max(latencies) * 1000, 1),
        p99_in_windows_ms=round(
            latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000, 1
        ),
        retired_median_s=round(statistics.median(retired), 2) if retired else float("nan"),
        retired_max_s=round(max(retired), 2) if retired else float("nan"),
        notes=sorted({t.note for t in trials if t.note})[:3],
        phase_medians_s=phase_medians,
        worst_per_reload_ms=[t.worst_ms for t in trials],
        worst_at_s=[t.worst_at_s for t in trials],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reloads", type=int, default=20, help="reloads per method (default 20)")
    parser.add_argument("--clients", type=int, default=4, help="load generator threads (default 4)")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.005,
        help="seconds each client waits between requests (default 0.005: a steady load that leaves "
        "the CPU some headroom; 0 saturates the 2 cores and measures CPU contention instead)",
    )
    parser.add_argument("--steady", type=float, default=10.0, help="seconds of steady load first")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated subset of " + ", ".join(METHODS),
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods: {', '.join(sorted(unknown))}")

    root = Path(tempfile.mkdtemp(prefix="reload-benchmark-"))
    site = make_site(root / "site")
    server = Gunicorn(site, workers=WORKERS, env={"EXAMPLE_BOOT_DELAY": BOOT_DELAY}).start(
        timeout=120
    )
    servers = [server]
    results: list[MethodResult] = []
    started_all = time.monotonic()
    print(f"load average before: {os.getloadavg()}", flush=True)
    try:
        assert wait_for(lambda: _settled(server, site), timeout=60)
        with LoadGenerator(
            port=server.port, clients=args.clients, max_seconds=args.steady + 5, timeout=30
        ) as load:
            time.sleep(args.steady)
        steady = load.report.hits
        steady_lat = sorted(h.latency for h in steady)
        steady_report = {
            "requests": len(steady),
            "failed": sum(1 for h in steady if h.status != 200),
            "p50_ms": round(steady_lat[len(steady_lat) // 2] * 1000, 1),
            "p99_ms": round(steady_lat[int(0.99 * len(steady_lat))] * 1000, 1),
        }
        print(f"steady: {steady_report}", flush=True)
        number = 1
        for method in methods:
            # one bounded load per method (the load generator never runs longer than 300 s)
            trials = []
            with LoadGenerator(
                port=server.port, clients=args.clients, max_seconds=METHOD_BUDGET + 30, timeout=30
            ) as load:
                time.sleep(1.0)
                method_started = time.monotonic()
                while (
                    len(trials) < args.reloads and time.monotonic() - method_started < METHOD_BUDGET
                ):
                    number += 1
                    one, server = trial(method, server, site, number)
                    if server not in servers:
                        servers.append(server)
                    trials.append(one)
                    print(
                        f"{method} #{len(trials)}: ok={one.ok} retired in {one.seconds_to_retired:.2f} s {one.note}",
                        flush=True,
                    )
            results.append(summarize(method, trials, list(load.report.hits)))
            print(asdict(results[-1]), flush=True)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(root, ignore_errors=True)

    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
        "boot_delay_s": float(BOOT_DELAY),
        "workers": WORKERS,
        "clients": args.clients,
        "pause_s": args.pause,
        "reloads_per_method": args.reloads,
        "total_seconds": round(time.monotonic() - started_all, 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    print()
    print(f"Machine: {machine}")
    print(
        f"Steady state (no reload): {steady_report['requests']} requests, {steady_report['failed']} failed, "
        f"p50 {steady_report['p50_ms']} ms, p99 {steady_report['p99_ms']} ms"
    )
    print()
    print(
        "| method | reloads ok | requests in reload windows | failed | worst latency | p99 in windows | start to old generation retired (median / max) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.method} | {r.succeeded}/{r.reloads} | {r.requests} | {r.failed} | {r.worst_latency_ms:.0f} ms "
            f"| {r.p99_in_windows_ms:.0f} ms | {r.retired_median_s:.2f} s / {r.retired_max_s:.2f} s |"
        )
    for r in results:
        if r.phase_medians_s:
            print(
                f"{r.method} phases (median s): "
                + ", ".join(f"{k} {v}" for k, v in r.phase_medians_s.items())
            )
        print(f"{r.method} worst latency per reload (ms): {r.worst_per_reload_ms}")
        print(f"{r.method} ... started this long after the command (s): {r.worst_at_s}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "steady": steady_report,
                    "results": [asdict(r) for r in results],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
