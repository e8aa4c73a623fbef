"""Benchmark the releases layout against the usual deploy shell script (benchmarks/shell_deploy.sh:
git pull, pip install, migrate, collectstatic, kill -HUP) and against the in-place layout's
``manage.py deploy``, interleaved (ours first in even rounds, the other first in odd ones), each
under a bounded loopback load, 0 failed requests asserted for ours.

- ``code``: a code-only release. Ours runs in the releases layout (made with --init-releases,
  Gunicorn started from ROOT/current); the script runs on an in-place copy of the same site.
- ``rollback``: ``deploy --rollback`` in the releases layout (it goes back and forth between
  the last two releases), beside the same script deploying a code-only release.
- ``requirements``: the same requirement change (``zdprobe`` pinned one version up, from a
  local wheelhouse: no network) in both layouts: the releases layout builds a new venv, the
  in-place layout's ``manage.py deploy`` (its own venv) runs pip in its live venv.
- ``boot``: one app boot, for scale: a fresh interpreter of the release's venv that sets Django
  up and loads the URLconf (what each new worker does before the readiness gate).

    .venv/bin/python benchmarks/releases_benchmark.py [--rounds 5] [--scenarios ...] [--json out.json]

Everything lives in a temporary directory; every Gunicorn runs in its own process group and is
stopped by its pid at the end, whatever happens.
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
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.deploy_benchmark import Run, measure, ours, script  # noqa: E402
from tests.support.gunicorn import Gunicorn  # noqa: E402
from tests.support.projects import _venv  # noqa: E402
from tests.support.releases import (  # noqa: E402
    deploy_from_current,
    gunicorn_from_current,
    init_releases,
    release_python,
    use_wheelhouse,
)
from tests.support.site import EXAMPLE, VENV_BIN, Site, make_site  # noqa: E402

SCENARIOS = ("code", "rollback", "requirements", "boot")
LABELS = {
    "ours": "`deploy` (releases layout)",
    "script": "shell script (in place)",
    "in_place": "`deploy` (in-place layout)",
    "boot": "one app boot (Django setup + URLconf)",
}
BOOT = "import django; django.setup(); from django.urls import get_resolver; get_resolver().url_patterns"
Command = Callable[[Site], tuple[int, float, float | None]]


@dataclass
class VenvSite(Site):
    """The example site run by its own venv (which sees the test venv's packages after its
    own): pip installs a requirement change into it, never into the test venv."""

    venv: Path = Path()

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def env(self, **extra: str) -> dict[str, str]:
        env = super().env(**extra)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env['PATH']}"
        env["VIRTUAL_ENV"] = str(self.venv)
        return env


def in_releases(root: Path, *args: str, steps: list[dict] | None = None) -> Command:
    """``deploy`` from ROOT/current; each run's step durations are appended to ``steps``."""

    def run(site: Site) -> tuple[int, float, float | None]:
        started = time.monotonic()
        result = deploy_from_current(site, root, "--json", *args)
        wall = time.monotonic() - started
        try:
            durations = {s["name"]: s["duration"] for s in json.loads(result.stdout)["steps"]}
        except (ValueError, KeyError, TypeError):
            durations = {}
        if steps is not None:
            steps.append(durations)
        if result.returncode:
            print(result.stdout, result.stderr, file=sys.stderr)
        return result.returncode, wall, 0.0  # no mixed window: old workers keep their release

    return run


def zerodeploy_wheel(folder: Path) -> Path:
    """A wheel of this checkout: a new venv installs django-zerodeploy from requirements.txt
    like any package, here from the local wheelhouse (built once, not per venv)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--disable-pip-version-check", "-w", str(folder), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return folder


def requirements(version: int) -> dict[str, str]:
    base = (EXAMPLE / "requirements.txt").read_text()
    return {"requirements.txt": f"{base}django-zerodeploy\nzdprobe=={version}.0\n"}


def venv_site(path: Path) -> VenvSite:
    base = make_site(path)
    venv = path / "venv"
    _venv(venv)
    return VenvSite(**{f.name: getattr(base, f.name) for f in fields(base)}, venv=venv)


def boot_times(site: Site, root: Path, rounds: int) -> list[Run]:
    """One app boot in a fresh interpreter of the current release's venv, ``rounds`` times."""
    runs = []
    current = root / "current"
    for rnd in range(rounds):
        started = time.monotonic()
        done = subprocess.run(
            [release_python(root), "-c", BOOT],
            cwd=current,
            env=site.env(PWD=str(current)),
            capture_output=True,
            timeout=120,
            check=False,
        )
        wall = round(time.monotonic() - started, 3)
        runs.append(Run("boot", "boot", rnd, done.returncode, wall, None, None, 0, 0, 0.0, 0.0))
        print(f"  boot     round {rnd} exit {done.returncode} wall {wall:6.2f} s", flush=True)
    return runs


@dataclass
class Releases:
    """The example site in the releases layout, served from ROOT/current."""

    site: Site
    root: Path
    server: Gunicorn


@dataclass
class Bench:
    """What one benchmark run measured, and every Gunicorn it started (stopped at the end)."""

    tmp: Path
    rounds: int
    runs: list[Run] = field(default_factory=list)
    steps: dict[str, list[dict]] = field(default_factory=lambda: {n: [] for n in SCENARIOS})
    servers: list[Gunicorn] = field(default_factory=list)

    def start(self, server: Gunicorn) -> Gunicorn:
        self.servers.append(server)  # stopped by pid in main()'s finally, even if start fails
        server.start(timeout=120)
        return server

    def record(
        self,
        name: str,
        rnd: int,
        who: str,
        site: Site,
        server: Gunicorn,
        release: str,
        command: Command,
    ) -> None:
        run = measure(name, who, rnd, site, server, 2, 2, release, command)
        self.runs.append(run)
        print(
            f"  {name:<12} round {rnd} {who:<8} exit {run.exit_code} "
            f"wall {run.wall:6.2f} s, served after {run.served_after} s, "
            f"{run.failed}/{run.requests} failed, worst {run.worst_ms} ms",
            flush=True,
        )


def releases_layout(bench: Bench) -> Releases:
    site, root = make_site(bench.tmp / "ours"), bench.tmp / "srv"
    init_releases(site, root)
    return Releases(site, root, bench.start(Gunicorn(site, **gunicorn_from_current(site, root))))


def code_and_rollback(bench: Bench, ours_layout: Releases, chosen: list[str]) -> None:
    their_site = make_site(bench.tmp / "script")
    their_server = bench.start(Gunicorn(their_site))
    root = ours_layout.root
    served = ["v1", "v1"]  # the previous and the current release's name
    for name in [n for n in ("code", "rollback") if n in chosen]:
        for rnd in range(bench.rounds):
            for who in ("ours", "script") if rnd % 2 == 0 else ("script", "ours"):
                mine = who == "ours"
                site, server = (
                    (ours_layout.site, ours_layout.server) if mine else (their_site, their_server)
                )
                command, release = script, f"{name}-{rnd}-{who}"
                if mine and name == "rollback":
                    command, release = (
                        in_releases(root, "--rollback", steps=bench.steps[name]),
                        served[0],
                    )
                    served.reverse()
                else:
                    site.commit_release(release)
                    if mine:
                        command, served = (
                            in_releases(root, steps=bench.steps[name]),
                            [served[1], release],
                        )
                bench.record(name, rnd, who, site, server, release, command)


def requirement_changes(bench: Bench, ours_layout: Releases) -> None:
    """Both layouts take the same requirement change each round (zdprobe one version up)."""
    wheels = zerodeploy_wheel(bench.tmp / "wheels")
    versions = tuple(f"{v}.0" for v in range(1, bench.rounds + 2))
    inplace = venv_site(bench.tmp / "inplace")
    inplace_server = bench.start(
        Gunicorn(inplace, launcher=[inplace.python, str(VENV_BIN / "gunicorn")])
    )
    root = ours_layout.root
    sides = {
        "ours": (
            ours_layout.site,
            ours_layout.server,
            in_releases(root, steps=bench.steps["requirements"]),
        ),
        "in_place": (inplace, inplace_server, ours),
    }
    for site, _server, _command in sides.values():
        use_wheelhouse(site, wheels, "zdprobe", versions)
    # not measured: the first change adds the lines (and builds the first venv of them)
    for who, (site, _server, _command) in sides.items():
        site.commit_release(f"req-setup-{who}", requirements(1))
        command = in_releases(root) if who == "ours" else ours
        code, _wall, _window = command(site)
        if code:
            raise RuntimeError(f"the setup requirement change failed for {who} (exit {code})")
    for rnd in range(bench.rounds):
        for who in ("ours", "in_place") if rnd % 2 == 0 else ("in_place", "ours"):
            site, server, command = sides[who]
            release = f"req-{rnd}-{who}"
            site.commit_release(release, requirements(rnd + 2))
            bench.record("requirements", rnd, who, site, server, release, command)


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.median(kept), 3) if kept else None


def table(runs: list[Run]) -> list[str]:
    """The results table, medians with the worst case in brackets."""
    lines = [
        "| scenario | command | runs | wall time | only the new release answers after | "
        "failed requests | worst request latency |",
        "|---|---|---|---|---|---|---|",
    ]
    for scen in SCENARIOS:
        for who in LABELS:
            chosen = [r for r in runs if r.scenario == scen and r.who == who]
            if not chosen:
                continue
            wall = f"{_median([r.wall for r in chosen]):.2f} s ({max(r.wall for r in chosen):.2f})"
            if who == "boot":
                lines.append(f"| {scen} | {LABELS[who]} | {len(chosen)} | {wall} | - | - | - |")
                continue
            served = _median([r.served_after for r in chosen])
            lines.append(
                f"| {scen} | {LABELS[who]} | {len(chosen)} | {wall} | "
                f"{f'{served:.2f} s' if served is not None else '-'} | "
                f"{sum(r.failed for r in chosen):,} of {sum(r.requests for r in chosen):,} | "
                f"{_median([r.worst_ms for r in chosen]):,.0f} ms "
                f"({max(r.worst_ms for r in chosen):,.0f}) |"
            )
    return lines


def targets(runs: list[Run]) -> list[str]:
    """The issue's speed targets, each with its measured ratio (medians of wall time)."""

    def wall(scen: str, who: str) -> float | None:
        return _median([r.wall for r in runs if r.scenario == scen and r.who == who])

    checks = []

    def check(what: str, value: float | None, limit: float, unit: str = "x") -> None:
        if value is None:
            return
        verdict = "met" if value <= limit else "MISSED"
        checks.append(f"- {what}: {value:.2f}{unit} (target <= {limit:g}{unit}): {verdict}")

    code, script_code = wall("code", "ours"), wall("code", "script")
    rollback, req, req_in_place = (
        wall("rollback", "ours"),
        wall("requirements", "ours"),
        wall("requirements", "in_place"),
    )
    boot = wall("boot", "boot")
    if code and script_code:
        check("code-only release / the script's", code / script_code, 0.8)
    if rollback and req:
        check("rollback / a requirement-change deploy (releases layout)", rollback / req, 0.5)
    if rollback is not None and boot is not None:
        check("rollback - one app boot", rollback - boot, 1.0, " s")
    if req and req_in_place:
        check("requirement change, releases / in-place layout", req / req_in_place, 1.2)
    return checks


def step_medians(steps: dict[str, list[dict]]) -> list[str]:
    """Where our deploys spent their time: each step's median duration per scenario."""
    lines = []
    for scen, runs in steps.items():
        names = dict.fromkeys(n for r in runs for n in r)
        parts = []
        for name in names:
            med = _median([r.get(name) for r in runs])
            if med:
                parts.append(f"{name} {med:.2f}")
        if parts:
            lines.append(f"- {scen}: " + ", ".join(parts))
    return lines


def machine() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load}"
    )


def run_scenarios(bench: Bench, chosen: list[str]) -> None:
    ours_layout = releases_layout(bench)
    if "code" in chosen or "rollback" in chosen:
        code_and_rollback(bench, ours_layout, chosen)
    if "requirements" in chosen:
        requirement_changes(bench, ours_layout)
    if "boot" in chosen:
        bench.runs += boot_times(ours_layout.site, ours_layout.root, bench.rounds)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--json", type=Path, help="write every run as JSON here")
    args = parser.parse_args(argv)
    chosen = [s for s in args.scenarios.split(",") if s]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown or args.rounds < 1:
        parser.error(f"--scenarios takes {', '.join(SCENARIOS)}; --rounds at least 1")
    bench = Bench(Path(tempfile.mkdtemp(prefix="zerodeploy-releases-bench-")), args.rounds)
    before = machine()
    print(f"releases benchmark on {before}; {args.rounds} interleaved rounds", flush=True)
    try:
        run_scenarios(bench, chosen)
    finally:
        for server in bench.servers:
            server.stop()
        shutil.rmtree(bench.tmp, ignore_errors=True)
    after = machine()
    print()
    print("\n".join(table(bench.runs)))
    print("\nTargets (medians of wall time):\n" + "\n".join(targets(bench.runs)))
    print("\nOur steps (median seconds):\n" + "\n".join(step_medians(bench.steps)))
    ours_failed = sum(r.failed for r in bench.runs if r.who != "script")
    print(f"\nfailed requests during our deploys: {ours_failed}")
    print(f"machine at the start: {before}\nmachine at the end: {after}")
    if args.json:
        data = {
            "machine": [before, after],
            "runs": [asdict(r) for r in bench.runs],
            "steps": bench.steps,
        }
        args.json.write_text(json.dumps(data, indent=2))
    return 0 if ours_failed == 0 and all(r.exit_code == 0 for r in bench.runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
