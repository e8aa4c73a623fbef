#!/usr/bin/env python3
"""The demo of the main job: ``python3 example_project/demo.py``.

It builds the example site (a git origin, a developer clone and a server checkout), serves the
server checkout with Gunicorn, commits a new release and deploys it with ``manage.py deploy``
under load; then it commits a broken release (a migration that fails), deploys it and shows it
refused and rolled back while the site keeps serving; finally it prints ``deploy --history``.

Needs only Python 3.11+ and git: the project's virtual environment (.venv) is created on first
use and the demo re-runs itself inside it. Everything lives in a temporary folder (``--dir`` to
choose one, ``--keep`` to keep it); Gunicorn is always stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import runtests  # noqa: E402  (the repository's own bootstrap: creates .venv once)

STEP_TIMEOUT = 240  # no command of the demo may take longer than this
BROKEN_MIGRATION = (
    "from django.db import migrations\n\n"
    "def fail(apps, schema_editor):\n"
    "    raise RuntimeError('this data migration is broken on purpose')\n\n"
    "class Migration(migrations.Migration):\n"
    "    dependencies = [('notes', '0001_initial')]\n"
    "    operations = [migrations.RunPython(fail, migrations.RunPython.noop)]\n"
)


def ensure_in_venv() -> None:
    """Re-run this script with the project's .venv. The demo needs only the project and
    Gunicorn (the ``demo`` extra): a .venv that the test runner made already has them and is
    used as it is; otherwise one is made without the test and docs tools (browser, MkDocs)."""
    venv = runtests.MAIN_VENV
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    python = venv / "bin" / "python"
    if not _has_extras(venv, ("demo", "test")):
        python = runtests.ensure_venv(venv, sys.executable, "demo")
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])  # noqa: S606


def _has_extras(venv: Path, any_of: tuple[str, ...]) -> bool:
    """The venv holds this very pyproject installed with one of ``any_of`` (runtests' marker:
    python, extras, Django, then pyproject.toml)."""
    marker = venv / ".zerodeploy-installed"
    if not (venv / "bin" / "python").exists() or not marker.exists():
        return False
    lines = marker.read_text().split("\n", 3)
    pyproject = (runtests.ROOT / "pyproject.toml").read_text()
    extras = lines[1].split(",") if len(lines) > 3 else []
    return len(lines) > 3 and lines[3] == pyproject and any(e in extras for e in any_of)


def title(text: str) -> None:
    print(f"\n== {text} ==", flush=True)


def deploy_under_load(site, server, load_cls, *args: str):
    """``manage.py deploy`` while 4 clients request the home page; returns (result, report)."""
    load = load_cls(port=server.port, clients=4, max_seconds=STEP_TIMEOUT, timeout=30).start()
    time.sleep(0.5)
    try:
        result = site.manage("deploy", "--no-input", *args, check=False, timeout=STEP_TIMEOUT)
        time.sleep(0.5)
    finally:
        report = load.stop()
    return result, report


def served(server) -> str:
    health = server.healthz()
    return f"{server.served_release()} (releaseId {str(health.get('releaseId'))[:10]})"


def run(root: Path) -> int:
    from tests.support.gunicorn import Gunicorn
    from tests.support.load import LoadGenerator
    from tests.support.site import make_site

    title(f"Building the example site in {root}")
    site = make_site(root / "site")
    print(f"origin {site.origin}\nserver checkout {site.server} (branch {site.server_branch()})")
    server = Gunicorn(site, workers=2)
    problems: list[str] = []
    try:
        server.start()
        print(
            f"Gunicorn master {server.master_pid()} serves http://127.0.0.1:{server.port}/: {served(server)}"
        )

        title("A new release: v2, deployed under load")
        sha = site.commit_release("v2", message="Release v2: a friendlier home page")
        print(f'committed and pushed {sha[:10]} "Release v2: a friendlier home page"')
        before = served(server)
        result, report = deploy_under_load(site, server, LoadGenerator)
        print("$ python manage.py deploy")
        print(result.stdout.rstrip() or result.stderr.rstrip())
        after = served(server)
        print(f"\nexit code {result.returncode}; served before: {before}; after: {after}")
        print(f"load: {report.summary()}")
        print(f"failed requests during the deploy: {report.failed}")
        if result.returncode != 0 or report.failed or server.served_release() != "v2":
            problems.append("the good release did not deploy cleanly")

        title("A broken release: v3, whose data migration fails")
        bad = site.commit_release(
            "v3",
            {"notes/migrations/0002_broken.py": BROKEN_MIGRATION},
            message="Release v3: a data migration that fails",
        )
        print(f'committed and pushed {bad[:10]} "Release v3: a data migration that fails"')
        result, report = deploy_under_load(site, server, LoadGenerator)
        print("$ python manage.py deploy")
        print(result.stdout.rstrip() or result.stderr.rstrip())
        print(
            f"\nexit code {result.returncode} (1: failed and rolled back, the previous release serves)"
        )
        print(
            f"served now: {served(server)}; server checkout at {site.server_head()[:10]} on {site.server_branch()}"
        )
        print(f"load: {report.summary()}")
        print(f"failed requests during the failed deploy: {report.failed}")
        if (
            result.returncode != 1
            or report.failed
            or server.served_release() != "v2"
            or site.server_head() != sha
        ):
            problems.append("the broken release was not refused and rolled back cleanly")

        title("Deploying again: the rolled-back release is refused until a newer commit or --force")
        again = site.manage("deploy", "--no-input", check=False, timeout=STEP_TIMEOUT)
        print(
            again.stdout.strip().splitlines()[-1] if again.stdout.strip() else again.stderr.strip()
        )

        title("python manage.py deploy --history")
        history = site.manage("deploy", "--history", check=False, timeout=STEP_TIMEOUT)
        print(history.stdout.rstrip() or history.stderr.rstrip())
    finally:
        server.stop()
        print(
            f"\nGunicorn stopped (master {', '.join(map(str, sorted(server.seen_masters))) or '-'})."
        )
    if problems:
        print("DEMO FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(
        "Demo finished: 0 failed requests, the good release deployed, the broken one rolled back."
    )
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dir", type=Path, help="folder for the demo site (default: a temporary one)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the demo folder afterwards")
    args = parser.parse_args(argv)
    ensure_in_venv()
    if args.dir:
        root = args.dir.resolve()
        if root.exists() and any(root.iterdir()):
            parser.error(f"{root} is not empty")
    else:
        root = Path(tempfile.mkdtemp(prefix="zerodeploy-demo-"))
    try:
        return run(root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"(kept {root})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
