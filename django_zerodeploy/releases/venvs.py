"""One virtualenv per requirements set, built where it will live, shared by releases.

A virtualenv cannot be moved (script shebangs and ``pyvenv.cfg`` hold absolute paths), so each
is built in place at ``ROOT/venvs/<key>`` and marked complete only at the end; a venv without the
mark (a build that was killed) is removed and built again. The key hashes the Python version and
the requirements files' contents, so a code-only release reuses its predecessor's venv (no pip
at all) and a release that changes requirements gets a new one while the old stays untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import proc

COMPLETE = ".zerodeploy-complete"
_PIP = ("-m", "pip", "--disable-pip-version-check", "--no-input")


def python_version(python: str | None = None) -> str:
    """``cpython-3.11.2``: the implementation and version a venv is built for."""
    if python is None or os.path.realpath(python) == os.path.realpath(sys.executable):
        return f"{platform.python_implementation().lower()}-{platform.python_version()}"
    code = "import platform;print(platform.python_implementation().lower()+'-'+platform.python_version())"
    result = proc.run([python, "-c", code], timeout=60)
    return result.stdout.strip() if result.ok else "unknown"


def venv_key(tree: Path, requirement_files: Sequence[str], version: str) -> str:
    """``<version>-<16 hex>``: the same requirements contents and Python, the same key."""
    digest = hashlib.sha256(version.encode())
    for rel in sorted(requirement_files):
        path = tree / rel
        digest.update(b"\0" + rel.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return f"{version}-{digest.hexdigest()[:16]}"


def base_python() -> str:
    """The interpreter the running virtualenv was made from (venvs are made from it, not from
    a venv's own python, so that a new venv never depends on an old one)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def is_complete(path: Path) -> bool:
    return (path / COMPLETE).is_file() and (path / "bin" / "python").exists()


@dataclass
class Built:
    """A venv that is ready: ``reused`` when it existed complete already."""

    path: Path
    key: str
    reused: bool
    output: str = ""
    installer: str = ""

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")


class VenvError(Exception):
    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.message, self.output = message, output


def uv() -> str | None:
    return shutil.which("uv")


def ensure(
    venvs_dir: Path,
    key: str,
    install_args: Sequence[str],
    *,
    python: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
) -> Built:
    """The complete venv ``venvs_dir/key``, built (``pip install *install_args``, or uv when
    installed) if it is missing or was left half-built."""
    path = venvs_dir / key
    if is_complete(path):
        return Built(path, key, reused=True)
    if path.exists() or path.is_symlink():
        shutil.rmtree(path)  # a killed build: never reuse half a venv
    venvs_dir.mkdir(parents=True, exist_ok=True)
    python = python or base_python()
    env = dict(env if env is not None else os.environ)
    env.pop("VIRTUAL_ENV", None)
    tool = uv()
    if tool:
        steps = [
            ("uv venv", [tool, "venv", "--seed", "--python", python, str(path)]),
            (
                "uv pip install",
                [tool, "pip", "install", "--python", f"{path}/bin/python", *install_args],
            ),
        ]
    else:
        steps = [
            ("python -m venv", [python, "-m", "venv", str(path)]),
            ("pip install", [str(path / "bin" / "python"), *_PIP, "install", *install_args]),
        ]
    outputs = []
    for what, argv in steps:
        result = proc.run(argv, env=env, timeout=timeout)
        outputs.append(result.output)
        if not result.ok:
            why = "timed out" if result.timed_out else f"exited {result.returncode}"
            last = result.last_lines(1)
            raise VenvError(f"{what} {why}: {last}", "\n".join(outputs))
    if install_args and not _imports_ok(path, env, timeout):
        raise VenvError(f"the new venv {path} cannot run pip check", "\n".join(outputs))
    (path / COMPLETE).write_text(json.dumps({"key": key, "python": python}) + "\n")
    return Built(
        path, key, reused=False, output="\n".join(outputs), installer="uv" if tool else "pip"
    )


def _imports_ok(path: Path, env: Mapping[str, str], timeout: float) -> bool:
    """``pip check``: every installed distribution has what it requires."""
    result = proc.run(
        [str(path / "bin" / "python"), *_PIP, "check"], env=dict(env), timeout=timeout
    )
    return result.ok


def freeze(python: str, env: Mapping[str, str] | None = None, timeout: float = 300) -> list[str]:
    """The running venv's distributions as requirement lines, for a new venv with the same
    packages. Editable installs are named by their local project directory: ``pip freeze``
    would print ``-e git+<remote>@<sha>``, which needs the remote and a commit it may lack."""
    result = proc.run([python, *_PIP, "freeze", "--exclude-editable"], env=env, timeout=timeout)
    listed = proc.run(
        [python, *_PIP, "list", "--editable", "--format=json"], env=env, timeout=timeout
    )
    for ran in (result, listed):
        if not ran.ok:
            raise VenvError(f"pip exited {ran.returncode}", ran.output)
    lines = [
        ln.strip() for ln in result.stdout.splitlines() if ln.strip() and not ln.startswith("#")
    ]
    try:
        editable = json.loads(listed.stdout or "[]")
    except ValueError:
        raise VenvError("pip list printed no JSON", listed.output) from None
    return lines + [
        f"-e {dist['editable_project_location']}"
        for dist in editable
        if dist.get("editable_project_location")
    ]


def remove(path: Path) -> None:
    """Remove a venv: the mark first, so that a removal cut short is never taken as complete."""
    (path / COMPLETE).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)
