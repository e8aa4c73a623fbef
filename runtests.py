#!/usr/bin/env python3
"""Run the test suite: ``python3 runtests.py [pytest args]``.

Creates ``.venv`` (Python 3.11+, the newest supported Django) on first use and re-runs itself
inside it, so a fresh machine with only Python 3 and git needs nothing else.

    python3 runtests.py                       # the full suite (what CI runs)
    python3 runtests.py -m "not integration"  # the fast unit tests
    python3 runtests.py --matrix              # full suite + fast tests on Django 4.2 and 6.x
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_VENV = ROOT / ".venv"
# (venv folder, python to create it with, Django requirement) for the extra combinations.
MATRIX = [
    (".venv-django42", "python3.11", "Django>=4.2,<5.0"),
    (".venv-django6", "python3.12", "Django>=6.0,<6.1"),
]


def find_python(name: str) -> str | None:
    """A Python interpreter by name, from PATH or from pyenv's versions."""
    found = shutil.which(name)
    if found:
        return found
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    version = name.removeprefix("python")
    for candidate in sorted(pyenv_root.glob(f"versions/{version}*/bin/python{version}"), reverse=True):
        return str(candidate)
    return None


def ensure_venv(venv: Path = DEFAULT_VENV, python: str = sys.executable, django: str | None = None) -> Path:
    """Create ``venv`` with the project (editable) and its test tools, once. Returns its python."""
    bin_python = venv / "bin" / "python"
    marker = venv / ".zerodeploy-installed"
    wanted = (ROOT / "pyproject.toml").read_text() + (django or "")
    if marker.exists() and marker.read_text() == wanted:
        return bin_python
    if not bin_python.exists():
        print(f"Creating {venv.name} with {python} ...", flush=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(bin_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    extras = ["-e", f"{ROOT}[test,docs]"]
    subprocess.run([*pip, *extras, *([django] if django else [])], check=True)
    marker.write_text(wanted)
    return bin_python


def in_venv(venv: Path) -> bool:
    return Path(sys.prefix).resolve() == venv.resolve()


def run_pytest(python: Path, args: list[str]) -> int:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'example_project'}")
    return subprocess.call([str(python), "-m", "pytest", *args], cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    matrix = "--matrix" in argv
    args = [a for a in argv if a != "--matrix"]
    python = ensure_venv()
    code = run_pytest(python, args)
    if not matrix:
        return code
    for folder, interpreter, django in MATRIX:
        found = find_python(interpreter)
        if not found:
            print(f"{interpreter} not found: cannot test {django}", file=sys.stderr)
            return 1
        print(f"\n== fast tests with {django} on {interpreter} ==", flush=True)
        extra_python = ensure_venv(ROOT / folder, found, django)
        code = code or run_pytest(extra_python, ["-m", "not integration", "-q", *args])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
