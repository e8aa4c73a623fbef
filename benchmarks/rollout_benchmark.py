"""Benchmark ``manage.py deploy --hosts all`` across 1, 2 and 3 hosts on loopback, with
``--batch 1`` and ``--batch 2``, behind a real HAProxy (tests/support/fleet.py: each host its
own checkout, Gunicorn and qcluster, one shared PostgreSQL database), under a bounded load
through HAProxy.

For each rollout: its wall time, the mean single-host deploy inside it (from the hosts'
Deployment rows), and the estimate ceil(hosts / batch) x (single deploy + drain + rise), with
DRAIN_SECONDS and the rise wait from the settings formula.

    .venv/bin/python benchmarks/rollout_benchmark.py [--json out.json]

Everything lives in a temporary directory; every server is stopped and the database dropped
at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fleet import FALL, INTER_MS, RISE, make_fleet, start_fleet, stop_fleet  # noqa: E402
from tests.support.gunicorn import wait_for  # noqa: E402
from tests.support.load import LoadGenerator  # noqa: E402

CACHE_SECONDS = 1.0  # HEALTHZ_CACHE_SECONDS default
DRAIN = INTER_MS / 1000 * FALL + CACHE_SECONDS + 1
RISE_WAIT = INTER_MS / 1000 * RISE + CACHE_SECONDS


@dataclass
class Run:
    hosts: int
    batch: int
    exit_code: int
    wall: float
    single_deploy: float
    estimate: float
    requests: int
    failed: int


def single_deploy_mean(fleet, rollout_id: int) -> float:
    """Mean duration of the hosts' deploys of one rollout (the rows say which rollout)."""
    sql = (
        "SELECT rollout_id, extract(epoch FROM finished_at - started_at) "
        "FROM django_zerodeploy_deployment WHERE rollout_id IS NOT NULL"
    )
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", fleet.database, "-qAtc", sql],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if "|" in line]
    durations = [float(d) for r, d in rows if int(r) == rollout_id and d]
    return sum(durations) / len(durations) if durations else 0.0


def rollout(fleet, hosts: int, batch: int, name: str) -> Run:
    fleet.hosts[0].site.commit_release(name)
    load = LoadGenerator(port=fleet.haproxy.port, clients=2, max_seconds=600, timeout=30).start()
    started = time.monotonic()
    result = fleet.coordinator("--hosts", "all", "--batch", str(batch), "--json")
    wall = time.monotonic() - started
    report = load.stop()
    data = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    single = single_deploy_mean(fleet, data["rollout_id"]) if data.get("rollout_id") else 0.0
    estimate = math.ceil(hosts / batch) * (single + DRAIN + RISE_WAIT)
    if result.returncode:
        print(result.stdout, result.stderr, file=sys.stderr)
    return Run(hosts, batch, result.returncode, wall, single, estimate, report.total, report.failed)


def measure(hosts: int) -> list[Run]:
    names = [f"web{i}" for i in range(1, hosts + 1)]
    with tempfile.TemporaryDirectory(prefix="zd-rollout-bench-") as tmp:
        fleet = make_fleet(Path(tmp), names, {})
        try:
            start_fleet(fleet)
            assert wait_for(
                lambda: (
                    len(json.loads(fleet.coordinator("--hosts", "--list", "--json").stdout or "[]"))
                    == hosts
                ),
                timeout=90,
            )
            return [rollout(fleet, hosts, b, f"h{hosts}b{b}") for b in (1, 2)]
        finally:
            stop_fleet(fleet)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    parser.add_argument("--hosts", type=int, nargs="*", default=[1, 2, 3])
    args = parser.parse_args()
    runs = [run for n in args.hosts for run in measure(n)]
    print(
        f"{date.today()} {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; drain {DRAIN:g} s, rise {RISE_WAIT:g} s"
    )
    print("| Hosts | Batch | Rollout (s) | Single deploy (s) | Estimate (s) | Requests | Failed |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r.hosts} | {r.batch} | {r.wall:.1f} | {r.single_deploy:.1f} | "
            f"{r.estimate:.1f} | {r.requests} | {r.failed} |"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2))
    return 0 if all(r.exit_code == 0 and r.failed == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
