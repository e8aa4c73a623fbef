"""Benchmark the releases layout against the usual deploy shell script (benchmarks/shell_deploy.sh:
git pull, pip install, migrate, collectstatic, kill -HUP), interleaved (ours first in even
rounds, the script first in odd ones), each under a bounded loopback load.

- ``code``: a code-only release. Ours runs in the releases layout (made with --init-releases,
  Gunicorn started from ROOT/current); the script runs on an in-place copy of the same site.
- ``rollback``: ``deploy --rollback`` in the releases layout (it goes back and forth between
  the last two releases), beside the same script deploying a code-only release.

    .venv/bin/python benchmarks/releases_benchmark.py [--rounds 5] [--json out.json]

Everything lives in a temporary directory; Gunicorn is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.deploy_benchmark import Run, measure, script, summary_rows  # noqa: E402
from tests.support.gunicorn import Gunicorn  # noqa: E402
from tests.support.releases import (  # noqa: E402
    deploy_from_current,
    gunicorn_from_current,
    init_releases,
)
from tests.support.site import Site, make_site  # noqa: E402


def in_releases(root: Path, *args: str):
    def run(site: Site) -> tuple[int, float, float | None]:
        started = time.monotonic()
        result = deploy_from_current(site, root, "--json", *args)
        wall = time.monotonic() - started
        if result.returncode:
            print(result.stdout, result.stderr, file=sys.stderr)
        return result.returncode, wall, 0.0  # no mixed window: old workers keep their release

    return run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write every run as JSON here")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="zerodeploy-releases-bench-"))
    machine = (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {date.today().isoformat()}"
    )
    print(f"releases benchmark on {machine}; {args.rounds} interleaved rounds", flush=True)
    runs: list[Run] = []
    servers: list[Gunicorn] = []
    try:
        ours_site, their_site = make_site(tmp / "ours"), make_site(tmp / "script")
        root = tmp / "srv"
        init_releases(ours_site, root)
        ours_server = Gunicorn(ours_site, **gunicorn_from_current(ours_site, root))  # type: ignore[arg-type]
        their_server = Gunicorn(their_site)
        servers += [ours_server, their_server]
        for server in servers:
            server.start(timeout=120)
        served = ["v1", "v1"]  # ours: the previous and the current release's name
        for name in ("code", "rollback"):
            for rnd in range(args.rounds):
                order = ("ours", "script") if rnd % 2 == 0 else ("script", "ours")
                for who in order:
                    mine = who == "ours"
                    site, server = (ours_site, ours_server) if mine else (their_site, their_server)
                    command = script
                    release = f"{name}-{rnd}-{who}"
                    if mine and name == "rollback":
                        command, release = in_releases(root, "--rollback"), served[0]
                        served.reverse()
                    else:
                        site.commit_release(release)
                        if mine:
                            command, served = in_releases(root), [served[1], release]
                    run = measure(name, who, rnd, site, server, 2, 2, release, command)
                    runs.append(run)
                    print(
                        f"  {name:<8} round {rnd} {who:<6} exit {run.exit_code} "
                        f"wall {run.wall:6.2f} s, served after {run.served_after} s, "
                        f"{run.failed}/{run.requests} failed, worst {run.worst_ms} ms",
                        flush=True,
                    )
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("\n".join(summary_rows(runs, ("code", "rollback"))))
    ours_failed = sum(r.failed for r in runs if r.who == "ours")
    print(f"\nfailed requests during our deploys: {ours_failed}; machine: {machine}")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "runs": [asdict(r) for r in runs]}, indent=2)
        )
    return 0 if ours_failed == 0 and all(r.exit_code == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
