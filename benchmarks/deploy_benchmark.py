"""Benchmark ``manage.py deploy`` against the usual deploy shell script (benchmarks/shell_deploy.sh:
git pull, pip install, migrate, collectstatic, kill -HUP) on the same example site, with the
runs of the two interleaved (ours first in even rounds, the script first in odd ones).

Three scenarios, each under a bounded loopback load (tests/support/load.py):

- ``noop``: nothing changed. Wall time of each command.
- ``code``: a code-only release (one file changed). Wall time of each command, and the time until
  every answer carries the new release (the script returns before its HUP has taken effect).
- ``boot``: the same, with a 1 s app boot (EXAMPLE_BOOT_DELAY=1) and 3 workers: the worst request
  latency during the deploy and the failed requests; and the mixed window (the live checkout
  moved -> the new generation alone serving; for the script, from its start, since git pull is
  its first command, to the moment every answer carries the new release).

Targets (issue 4): no-op <= 0.3x the script; code-only <= 1.0x; worst latency with a 1 s boot
<= 0.2x; zero failed requests for ours in every run; mixed window under 3 s.

    .venv/bin/python benchmarks/deploy_benchmark.py [--rounds 5] [--json out.json]

Everything lives in a temporary directory; Gunicorn is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gunicorn import Gunicorn, wait_for  # noqa: E402
from tests.support.load import LoadGenerator  # noqa: E402
from tests.support.site import Site, make_site  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "shell_deploy.sh"
TIMEOUT = 300  # no single command may take longer


@dataclass
class Run:
    scenario: str
    who: str  # "ours" or "script"
    round: int
    exit_code: int
    wall: float  # seconds the command took
    served_after: float | None  # seconds from its start until only the new release answers
    mixed_window: float | None
    requests: int
    failed: int
    worst_ms: float
    p50_ms: float


def ours(site: Site) -> tuple[int, float, float | None]:
    started = time.monotonic()
    result = site.manage("deploy", "--no-input", "--json", check=False, timeout=TIMEOUT)
    wall = time.monotonic() - started
    window = None
    try:
        window = json.loads(result.stdout).get("mixed_window")
    except ValueError:
        print(result.stdout, result.stderr, file=sys.stderr)
    return result.returncode, wall, window


def script(site: Site) -> tuple[int, float, float | None]:
    env = site.env(PIDFILE=str(site.pidfile), PYTHON=sys.executable)
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(SCRIPT), str(site.server)],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    wall = time.monotonic() - started
    if result.returncode:
        print(result.stdout, result.stderr, file=sys.stderr)
    return result.returncode, wall, None


def settled(server: Gunicorn, release: str, workers: int) -> bool:
    """Only ``release`` answers and the master has its full set of workers."""
    return server.served_releases(samples=6) == {release} and len(server.worker_pids()) == workers


def measure(
    scenario: str,
    who: str,
    rnd: int,
    site: Site,
    server: Gunicorn,
    workers: int,
    clients: int,
    release: str | None,
    command: Callable[[Site], tuple[int, float, float | None]] | None = None,
) -> Run:
    """One timed command under load; ``command`` (default: ours or the script, by ``who``)
    returns (exit code, wall seconds, mixed window)."""
    load = LoadGenerator(port=server.port, clients=clients, max_seconds=TIMEOUT, timeout=30).start()
    time.sleep(0.5)
    started = time.monotonic()
    code, wall, window = (command or (ours if who == "ours" else script))(site)
    expected = release or server.served_release() or ""
    done = wait_for(lambda: settled(server, expected, workers), timeout=90, interval=0.05)
    served_after = time.monotonic() - started if done else None
    if who == "script" and release:
        window = served_after  # git pull is the script's first command
    time.sleep(1.0)  # the tail of the reload (old workers leaving) stays in the window
    report = load.stop()
    hits = [h for h in report.hits if h.started >= started]
    failed = sum(1 for h in hits if h.status != 200)
    latencies = sorted(h.latency for h in hits) or [0.0]
    return Run(
        scenario,
        who,
        rnd,
        code,
        round(wall, 3),
        None if served_after is None else round(served_after, 3),
        None if window is None else round(window, 3),
        len(hits),
        failed,
        round(max(latencies) * 1000, 1),
        round(statistics.median(latencies) * 1000, 1),
    )


def scenario(
    name: str, root: Path, rounds: int, workers: int, clients: int, boot_delay: str | None
) -> list[Run]:
    site = make_site(root / name)
    env = {"EXAMPLE_BOOT_DELAY": boot_delay} if boot_delay else {}
    server = Gunicorn(site, workers=workers, env=env)
    runs: list[Run] = []
    try:
        server.start(timeout=120)
        for rnd in range(rounds):
            order = ("ours", "script") if rnd % 2 == 0 else ("script", "ours")
            for who in order:
                release = None
                if name != "noop":
                    release = f"{name}-{rnd}-{who}"
                    site.commit_release(release)
                run = measure(name, who, rnd, site, server, workers, clients, release)
                runs.append(run)
                print(
                    f"  {name:<5} round {rnd} {who:<6} exit {run.exit_code} wall {run.wall:6.2f} s "
                    f"served after {run.served_after} s, mixed window {run.mixed_window} s, "
                    f"{run.failed}/{run.requests} failed, worst {run.worst_ms} ms",
                    flush=True,
                )
    finally:
        server.stop()
    return runs


def summary(runs: list[Run]) -> list[str]:
    return summary_rows(runs, ("noop", "code", "boot"))


def summary_rows(runs: list[Run], scenarios: tuple[str, ...]) -> list[str]:
    """The results table (medians and maxima per scenario and command) and the ratios."""

    def pick(scen: str, who: str) -> list[Run]:
        return [r for r in runs if r.scenario == scen and r.who == who]

    def med(values: list[float | None]) -> float | None:
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 3) if values else None

    lines = [
        "| scenario | command | runs | wall median (max) | only new release answers after | "
        "mixed window median (max) | failed requests | worst latency median (max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for scen in scenarios:
        medians = {}
        for who in ("ours", "script"):
            chosen = pick(scen, who)
            if not chosen:
                continue
            wall = med([r.wall for r in chosen])
            worst = med([r.worst_ms for r in chosen])
            medians[who] = (wall, worst)
            served = med([r.served_after for r in chosen]) if scen != "noop" else None
            window = med([r.mixed_window for r in chosen]) if scen != "noop" else None
            max_window = max((r.mixed_window or 0 for r in chosen), default=0)
            label = "manage.py deploy" if who == "ours" else "shell_deploy.sh"
            lines.append(
                f"| {scen} | {label} | {len(chosen)} | {wall} s ({max(r.wall for r in chosen):.3f}) | "
                f"{served if served is not None else '-'} s | "
                f"{f'{window} s ({max_window:.3f})' if window is not None else '-'} | "
                f"{sum(r.failed for r in chosen)} of {sum(r.requests for r in chosen)} | "
                f"{worst} ms ({max(r.worst_ms for r in chosen)}) |"
            )
        if "ours" in medians and "script" in medians:
            (ow, oworst), (sw, sworst) = medians["ours"], medians["script"]
            ratios.append(
                f"{scen}: wall {ow / sw:.2f}x the script"
                + (f", worst latency {oworst / sworst:.2f}x" if scen == "boot" and sworst else "")
            )
    return lines + ["", "Ratios (medians): " + "; ".join(ratios)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenarios", default="noop,code,boot")
    parser.add_argument("--json", type=Path, help="write every run as JSON here")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="zerodeploy-deploy-bench-"))
    machine = (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {date.today().isoformat()}"
    )
    print(f"deploy benchmark on {machine}; {args.rounds} interleaved rounds", flush=True)
    runs: list[Run] = []
    try:
        chosen = args.scenarios.split(",")
        if "noop" in chosen:
            runs += scenario("noop", root, args.rounds, workers=2, clients=2, boot_delay=None)
        if "code" in chosen:
            runs += scenario("code", root, args.rounds, workers=2, clients=2, boot_delay=None)
        if "boot" in chosen:
            runs += scenario("boot", root, args.rounds, workers=3, clients=4, boot_delay="1")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print("\n".join(summary(runs)))
    ours_failed = sum(r.failed for r in runs if r.who == "ours")
    print(f"\nfailed requests during our deploys: {ours_failed}; machine: {machine}")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "runs": [asdict(r) for r in runs]}, indent=2)
        )
    return 0 if ours_failed == 0 and all(r.exit_code == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
