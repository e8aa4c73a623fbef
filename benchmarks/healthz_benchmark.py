"""Benchmark /healthz/ against a view that returns a constant HttpResponse.

Both paths are served by the same Gunicorn (2 sync workers, the example site, every shipped
check enabled) in the same run, alternating, with a bounded loopback load: ``wrk`` when it is
installed, else the project's own load generator (tests/support/load.py). Also measured: the
cost of one uncached round of checks in-process, and /healthz/ throughput when every probe runs
a round (HEALTHZ_CACHE_SECONDS = 0) to show what the per-process cache buys.

    .venv/bin/python benchmarks/healthz_benchmark.py [--seconds 5] [--rounds 3] [--json out.json]

Nothing is written to the repository; the site lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from django_zerodeploy.proc import run  # noqa: E402
from tests.support.gunicorn import Gunicorn  # noqa: E402
from tests.support.load import LoadGenerator  # noqa: E402
from tests.support.site import Site, make_site  # noqa: E402

# The constant view lives only here: a URLconf that adds /constant/ in front of the site's own.
BENCH_URLS = """\
from django.http import HttpResponse
from django.urls import path

from exampleproject.urls import urlpatterns as site_urlpatterns


def constant(request):
    return HttpResponse(b"ok\\n", content_type="text/plain")


urlpatterns = [path("constant/", constant), *site_urlpatterns]
"""

BENCH_SETTINGS = """\
import os

from exampleproject.settings import *  # noqa: F401,F403
from exampleproject.settings import ZERODEPLOY

ROOT_URLCONF = "healthz_bench_urls"
ZERODEPLOY = {
    **ZERODEPLOY,
    "HEALTHZ_CACHE_SECONDS": float(os.environ.get("BENCH_CACHE_SECONDS", "1")),
}
"""

ROUND_COST = """\
import json, statistics, time
import django
django.setup()
from django_zerodeploy import health

health.prepare()
for _ in range(5):
    health.run_checks()
rounds, per_check = [], {}
for _ in range(ROUNDS):
    started = time.perf_counter()
    report = health.run_checks()
    rounds.append(time.perf_counter() - started)
    for r in report.results:
        per_check.setdefault(r.key, []).append(r.duration)
health.get_report()
started = time.perf_counter()
for _ in range(10000):
    health.get_report()
cached = (time.perf_counter() - started) / 10000
print(json.dumps({
    "rounds": len(rounds),
    "median_ms": statistics.median(rounds) * 1000,
    "p90_ms": sorted(rounds)[int(len(rounds) * 0.9)] * 1000,
    "per_check_median_ms": {k: statistics.median(v) * 1000 for k, v in per_check.items()},
    "cached_lookup_us": cached * 1e6,
    "checks": [r.key for r in report.results],
    "status": report.status,
}))
"""


def prepare_site(base: Path) -> tuple[Site, Path]:
    site = make_site(base / "site")
    modules = base / "bench_modules"
    modules.mkdir()
    (modules / "healthz_bench_urls.py").write_text(BENCH_URLS)
    (modules / "healthz_bench_settings.py").write_text(BENCH_SETTINGS)
    site.extra_env.update(DJANGO_SETTINGS_MODULE="healthz_bench_settings", PYTHONPATH=str(modules))
    return site, modules


@contextlib.contextmanager
def postgresql(site: Site) -> Iterator[str]:
    """Point the site at a fresh PostgreSQL database on 127.0.0.1 (dropped afterwards)."""
    import psycopg

    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    name = f"zd_healthz_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        site.extra_env.update(EXAMPLE_DB_ENGINE="postgresql", EXAMPLE_DB_NAME=name)
        site.manage("migrate", "--noinput")
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wrk(port: int, path: str, seconds: float, connections: int) -> dict[str, Any]:
    result = run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}{path}"],
        timeout=seconds + 60,
    )
    text = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    failed = int(non2xx.group(1)) if non2xx else 0
    failed += sum(int(g) for g in errors.groups()) if errors else 0
    return {"rps": rps, "requests": total, "failed": failed, "tool": "wrk"}


def python_load(port: int, path: str, seconds: float, connections: int) -> dict[str, Any]:
    load = LoadGenerator(port, path=path, clients=connections, max_seconds=seconds + 30)
    started = time.monotonic()
    load.start()
    time.sleep(seconds)
    report = load.stop()
    elapsed = time.monotonic() - started
    return {
        "rps": report.total / elapsed,
        "requests": report.total,
        "failed": report.failed,
        "tool": "tests/support/load.py",
    }


def measure(
    server: Gunicorn, path: str, seconds: float, connections: int, tool: str
) -> dict[str, Any]:
    assert server.port
    if tool == "wrk":
        return wrk(server.port, path, seconds, connections)
    return python_load(server.port, path, seconds, connections)


def round_cost(site: Site, rounds: int) -> dict[str, Any]:
    result = run(
        [sys.executable, "-c", ROUND_COST.replace("ROUNDS", str(rounds))],
        cwd=site.server,
        env=site.env(),
        timeout=300,
    )
    if not result.ok:
        raise SystemExit(f"round cost measurement failed:\n{result.output}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _os_name() -> str:
    try:
        release = platform.freedesktop_os_release()
        return release.get("PRETTY_NAME", platform.platform())
    except OSError:
        return platform.platform()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5, help="length of each load run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per path")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--tool", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--postgresql", action="store_true", help="a fresh PostgreSQL database on 127.0.0.1:5432"
    )
    args = parser.parse_args()

    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPUs, {_os_name()}, Python {platform.python_version()}",
        "tool": args.tool,
        "workers": args.workers,
        "connections": args.connections,
        "seconds": args.seconds,
    }
    with (
        tempfile.TemporaryDirectory(prefix="healthz-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        site, _ = prepare_site(Path(tmp))
        results["database"] = stack.enter_context(postgresql(site)) if args.postgresql else "sqlite"
        results["round_cost"] = round_cost(site, rounds=200)

        server = Gunicorn(site, workers=args.workers)
        try:
            server.start()
            for path in ("/constant/", "/healthz/"):  # warm both
                measure(server, path, 1, args.connections, args.tool)
            runs: dict[str, list[dict[str, Any]]] = {"/constant/": [], "/healthz/": []}
            for _ in range(args.rounds):
                for path in runs:
                    runs[path].append(
                        measure(server, path, args.seconds, args.connections, args.tool)
                    )
        finally:
            server.stop()
        results["runs"] = runs

        site.extra_env["BENCH_CACHE_SECONDS"] = "0"
        uncached = Gunicorn(site, workers=args.workers)
        try:
            uncached.start()
            measure(uncached, "/healthz/", 1, args.connections, args.tool)
            results["uncached_healthz"] = measure(
                uncached, "/healthz/", args.seconds, args.connections, args.tool
            )
        finally:
            uncached.stop()

    constant = statistics.median(r["rps"] for r in runs["/constant/"])
    healthz = statistics.median(r["rps"] for r in runs["/healthz/"])
    results["median_rps"] = {"/constant/": constant, "/healthz/": healthz}
    results["ratio"] = healthz / constant
    failed = sum(r["failed"] for rs in runs.values() for r in rs)
    cost = results["round_cost"]
    print(
        f"{results['date']}  {results['machine']}  load: {args.tool}, {args.connections} connections, "
        f"{args.workers} sync workers, {args.rounds} x {args.seconds:g} s per path, "
        f"database {results['database']}"
    )
    print(f"checks: {', '.join(cost['checks'])}")
    print("| path | req/s (median) | runs | failed |")
    print("|---|---|---|---|")
    for path, rs in runs.items():
        each = ", ".join(f"{r['rps']:.0f}" for r in rs)
        median = statistics.median(r["rps"] for r in rs)
        print(f"| {path} | {median:.0f} | {each} | {sum(r['failed'] for r in rs)} |")
    unc = results["uncached_healthz"]
    print(f"| /healthz/ with HEALTHZ_CACHE_SECONDS=0 | {unc['rps']:.0f} | 1 | {unc['failed']} |")
    print(f"ratio /healthz/ : /constant/ = {results['ratio']:.2f}")
    print(
        f"one uncached round: median {cost['median_ms']:.2f} ms, p90 {cost['p90_ms']:.2f} ms "
        f"({cost['rounds']} rounds); cached lookup {cost['cached_lookup_us']:.2f} µs"
    )
    for key, ms in cost["per_check_median_ms"].items():
        print(f"  {key}: {ms:.3f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
