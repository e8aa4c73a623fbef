#!/usr/bin/env python3
"""Run the test suite: ``python3 runtests.py [pytest args]``.

Needs only Python 3.11+ and git: it creates ``.venv`` (the project, editable, with its test and
docs tools) on first use, or again when pyproject.toml changed, installs Debian's chromium for
the browser test when it is missing (as root, with apt), and runs pytest in .venv. The tests
also use the PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) servers the machine runs.

    python3 runtests.py                          # everything (what CI runs): the full suite on
                                                 # Python 3.11 + Django 5.2, then the fast tests
                                                 # and the `matrix` Gunicorn subset on Django 4.2
                                                 # and on the newest Django 6.x
    python3 runtests.py -m "not integration"     # only the fast tests, in .venv
    python3 runtests.py tests/test_git.py -x
    python3 runtests.py --matrix -k settings     # your arguments, plus the matrix
    python3 runtests.py --setup-only             # only create/refresh .venv, print its python

Arguments are passed to pytest. The matrix needs Python 3.12 for Django 6.x (from PATH or
pyenv); without it a local run says so and skips that combination, CI (CI=true) fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MAIN_VENV = ROOT / ".venv"
MIN_PYTHON = (3, 11)
# what the other Django versions run: the fast tests plus a Gunicorn-backed subset under load
# (a good deploy, broken ones refused and rolled back, a good and a refused reload)
MATRIX_TESTS = ["-m", "not integration or matrix"]
SKIPPED = -1  # a local run without the interpreter for one combination


@dataclass(frozen=True)
class Combination:
    """One extra (Python, Django) pair on which the fast tests run."""

    venv: str
    python: str
    django: str


MATRIX = [
    Combination(".venv-django42", "python3.11", "Django>=4.2,<5.0"),
    Combination(".venv-django6", "python3.12", "Django>=6.0,<7.0"),
]


def find_python(name: str) -> str | None:
    """A Python interpreter by name (``python3.12``), from PATH or from pyenv's versions."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    version = name.removeprefix("python")
    # pyenv's own builds first: a pyenv shim on PATH fails when that version is not selected
    for candidate in sorted(pyenv_root.glob(f"versions/{version}.*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if found and subprocess.call([found, "-c", ""], stderr=subprocess.DEVNULL) == 0:
        return found
    return None


def ensure_venv(venv: Path, python: str, extras: str, django: str | None = None) -> Path:
    """Create ``venv`` with the project installed editable; reinstall when pyproject changes.
    Returns the venv's python."""
    bin_python = venv / "bin" / "python"
    marker = venv / ".zerodeploy-installed"
    wanted = f"{python}\n{extras}\n{django}\n" + (ROOT / "pyproject.toml").read_text()
    if bin_python.exists() and marker.exists() and marker.read_text() == wanted:
        return bin_python
    if not bin_python.exists():
        print(f"runtests: creating {venv.name} with {python}", flush=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    print(
        f"runtests: installing the project into {venv.name} ({django or 'newest Django'})",
        flush=True,
    )
    pip = [str(bin_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-e", f"{ROOT}[{extras}]", *([django] if django else [])], check=True)
    marker.write_text(wanted)
    return bin_python


def ensure_chromium() -> None:
    """The browser test drives Debian's Chromium (a test tool's own browser download cannot
    work offline). Install it with apt when missing and we may; else say what is missing."""
    if shutil.which("chromium"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("runtests: installing Debian's chromium for the browser test", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
        return
    print(
        "runtests: chromium is not installed (apt-get install chromium, as root): "
        "the browser test will fail",
        file=sys.stderr,
    )


def run_pytest(python: Path, args: list[str]) -> int:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)  # would override pyproject's tests.settings
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "example_project")])
    return subprocess.call([str(python), "-m", "pytest", *args], cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    if sys.version_info < MIN_PYTHON:
        print(
            f"runtests: Python {'.'.join(map(str, MIN_PYTHON))}+ is needed, this is {sys.version.split()[0]}",
            file=sys.stderr,
        )
        return 2
    if argv == ["--setup-only"]:  # CI: create .venv for the lint and docs steps
        print(ensure_venv(MAIN_VENV, sys.executable, "test,docs"))
        return 0
    matrix = "--matrix" in argv or not argv
    args = [a for a in argv if a != "--matrix"]
    on_ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

    results: list[tuple[str, int]] = []
    python = ensure_venv(MAIN_VENV, sys.executable, "test,docs")
    ensure_chromium()
    print(
        f"\n== tests on Python {sys.version_info[0]}.{sys.version_info[1]} in .venv ==", flush=True
    )
    results.append(("main: " + (" ".join(args) or "full suite"), run_pytest(python, args)))

    if matrix:
        for combo in MATRIX:
            label = f"fast tests + matrix subset, {combo.django}, {combo.python}"
            interpreter = find_python(combo.python)
            if not interpreter:
                print(
                    f"runtests: {combo.python} not found: cannot run the {label}", file=sys.stderr
                )
                results.append((f"{label}: {combo.python} not found", 1 if on_ci else SKIPPED))
                continue
            print(f"\n== {label} ==", flush=True)
            venv_python = ensure_venv(ROOT / combo.venv, interpreter, "test", combo.django)
            # exit code 5 (no test collected) is a failure like any other non-zero code
            results.append((label, run_pytest(venv_python, [*MATRIX_TESTS, "-q", *args])))

    print("\nruntests summary:")
    for label, code in results:
        status = {0: "ok  ", SKIPPED: "skip"}.get(code, f"FAIL (exit {code})")
        print(f"  {status} {label}")
    return next((code for _, code in results if code not in (0, SKIPPED)), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
