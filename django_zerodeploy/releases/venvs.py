"""One virtualenv per requirements set, built where it will live, shared by releases.

A virtualenv cannot be moved (script shebangs and ``pyvenv.cfg`` hold absolute paths), so each
is built in place at ``ROOT/venvs/<key>`` and marked complete only at the end; a venv without the
mark (a build that was killed) is removed and built again. The key hashes the Python version and
the requirements files' contents, so a code-only release reuses its predecessor's venv (no pip
at all) and a release that changes requirements gets a new one while the old stays untouched.
That new one starts as a copy of the serving venv's packages (only read, never changed), so pip
installs just the distributions that changed, yet ends with what a fresh venv would hold.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import proc

COMPLETE = ".zerodeploy-complete"
PIP = ("-m", "pip", "--disable-pip-version-check", "--no-input")  # every pip call of ours


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
    seed: Path | None = None,
) -> Built:
    """The complete venv ``venvs_dir/key``, built (``pip install *install_args``, or uv when
    installed) if it is missing or was left half-built. With pip, a complete ``seed`` venv of
    the same Python (the serving release's) lends its packages: pip then installs only what
    changed. A seeded build that fails is started again from scratch."""
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
    installer, outputs = "uv" if tool else "pip", list[str]()
    if seed is not None and not tool and install_args and is_complete(seed):
        try:
            outputs = _build_seeded(path, seed, python, install_args, env, timeout)
            installer = f"pip from {seed.name}'s packages"
        except (VenvError, OSError, ValueError) as exc:
            outputs = [f"building from {seed.name}'s packages failed ({exc}): from scratch"]
            shutil.rmtree(path, ignore_errors=True)
            seed = None
    else:
        seed = None
    if seed is None:
        outputs += _run_steps(_fresh_steps(path, python, tool, install_args), env, timeout)
    # a seeded venv holds one resolution of pip's, consistent by construction: no pip check
    if install_args and seed is None and not _imports_ok(path, env, timeout):
        raise VenvError(f"the new venv {path} cannot run pip check", "\n".join(outputs))
    (path / COMPLETE).write_text(json.dumps({"key": key, "python": python}) + "\n")
    return Built(path, key, reused=False, output="\n".join(outputs), installer=installer)


Steps = list[tuple[str, list[str]]]


def _fresh_steps(path: Path, python: str, tool: str | None, install_args: Sequence[str]) -> Steps:
    if tool:
        return [
            ("uv venv", [tool, "venv", "--seed", "--python", python, str(path)]),
            (
                "uv pip install",
                [tool, "pip", "install", "--python", f"{path}/bin/python", *install_args],
            ),
        ]
    return [
        ("python -m venv", [python, "-m", "venv", str(path)]),
        ("pip install", [str(path / "bin" / "python"), *PIP, "install", *install_args]),
    ]


def _run_steps(steps: Steps, env: Mapping[str, str], timeout: float) -> list[str]:
    outputs = []
    for what, argv in steps:
        result = proc.run(argv, env=env, timeout=timeout)
        outputs.append(result.output)
        if not result.ok:
            why = "timed out" if result.timed_out else f"exited {result.returncode}"
            raise VenvError(f"{what} {why}: {result.last_lines(1)}", "\n".join(outputs))
    return outputs


def _build_seeded(
    path: Path,
    seed: Path,
    python: str,
    install_args: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
) -> list[str]:
    """A new venv that starts with a copy of ``seed``'s packages, then holds exactly what a
    fresh one would: pip resolves the requirements ignoring what is installed (a dry run), the
    install pinned to that resolution changes only the distributions whose version differs,
    and what the requirements no longer need is uninstalled."""
    bare = [python, "-m", "venv", "--without-pip", str(path)]  # pip comes with the copy
    outputs = _run_steps([("python -m venv", bare)], env, timeout)
    copy_packages(seed, path)
    pip = [str(path / "bin" / "python"), *PIP]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        dry = [*pip, "install", "--dry-run", "--ignore-installed", "-q", "--report", str(report)]
        outputs += _run_steps([("pip install --dry-run", [*dry, *install_args])], env, timeout)
        wanted, direct = resolved(report)
        have = installed(path)
        changed = sorted(name for name, version in wanted.items() if have.get(name) != version)
        if direct & set(changed) or uses_hashes(install_args):
            # a path, URL or VCS requirement, or hash checking: pip installs them as written,
            # held to the resolution
            pins = Path(tmp) / "pins.txt"
            pins.write_text("".join(f"{name}=={version}\n" for name, version in wanted.items()))
            install = [*pip, "install", *install_args, "-c", str(pins)]
        else:  # the resolution is known: its versions of what differs, nothing resolved again
            install = [*pip, "install", "--no-deps", *(f"{n}=={wanted[n]}" for n in changed)]
        if changed:
            outputs += _run_steps([("pip install", install)], env, timeout)
    extra = sorted(set(have) - set(wanted) - _TOOLS)
    if extra:
        outputs += _run_steps([("pip uninstall", [*pip, "uninstall", "-y", *extra])], env, timeout)
    return outputs


def resolved(report: Path) -> tuple[dict[str, str], set[str]]:
    """From ``pip install --report``: distribution name -> version, and the names installed
    from a path, URL or VCS rather than an index."""
    try:
        items = json.loads(report.read_text())["install"]
        wanted = {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in items}
        direct = {canonical(i["metadata"]["name"]) for i in items if i.get("is_direct")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VenvError(f"pip's report is unreadable: {exc}") from None
    return wanted, direct


_FILE_FLAGS = ("-r", "-c", "--requirement", "--constraint")


def uses_hashes(install_args: Sequence[str], seen: set[Path] | None = None) -> bool:
    """A requirements file (or one it includes) pins hashes: pip must read them itself."""
    seen = set() if seen is None else seen
    for flag, value in zip(install_args, install_args[1:], strict=False):
        path = Path(value)
        if flag not in _FILE_FLAGS or path in seen or not path.is_file():
            continue
        seen.add(path)
        text = path.read_text(errors="replace")
        nested = []
        for line in text.splitlines():
            words = line.replace("=", " ", 1).split() if line.startswith("--") else line.split()
            if len(words) >= 2 and words[0] in _FILE_FLAGS:
                nested += [words[0], str(path.parent / words[1])]
        if "--hash" in text or uses_hashes(nested, seen):
            return True
    return False


def installed(path: Path) -> dict[str, str]:
    """The distributions installed in a venv and their versions, read from their metadata."""
    (site_packages,) = path.glob("lib/python*/site-packages")
    found = {}
    for metadata in site_packages.glob("*.dist-info/METADATA"):
        head = metadata.read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[0]
        fields = dict(ln.split(": ", 1) for ln in head.splitlines() if ": " in ln)
        if fields.get("Name") and fields.get("Version"):
            found[canonical(fields["Name"])] = fields["Version"].strip()
    return found


def _link(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links refused: a copy
        shutil.copy2(source, target)


_TOOLS = {"pip", "setuptools", "wheel"}  # what venv itself installs: never uninstalled


def canonical(name: str) -> str:
    """PEP 503 normalised name: ``Foo_Bar`` and ``foo-bar`` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def copy_packages(seed: Path, path: Path) -> None:
    """``seed``'s site-packages into the new venv, and the scripts pip wrote for them with
    their shebang pointed at the new venv (a venv's own files, made by ``venv``, are kept).
    The files are hard links, as uv links from its cache: pip and Python replace a file (a new
    inode) and never write into one, so nothing done to the new venv reaches the serving one.
    Bytecode comes too: the import system records the real source path when it loads it."""
    (source,) = seed.glob("lib/python*/site-packages")
    (target,) = path.glob("lib/python*/site-packages")
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True, copy_function=_link)
    old, new = f"#!{seed}/bin/".encode(), f"#!{path}/bin/".encode()
    for script in (seed / "bin").iterdir():
        copy = path / "bin" / script.name
        if copy.exists() or copy.is_symlink() or script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        if data.startswith(old):
            copy.write_bytes(new + data[len(old) :])
            copy.chmod(script.stat().st_mode)


def _imports_ok(path: Path, env: Mapping[str, str], timeout: float) -> bool:
    """``pip check``: every installed distribution has what it requires."""
    result = proc.run([str(path / "bin" / "python"), *PIP, "check"], env=dict(env), timeout=timeout)
    return result.ok


def freeze(python: str, env: Mapping[str, str] | None = None, timeout: float = 300) -> list[str]:
    """The running venv's distributions as requirement lines, for a new venv with the same
    packages. Editable installs are named by their local project directory: ``pip freeze``
    would print ``-e git+<remote>@<sha>``, which needs the remote and a commit it may lack."""
    result = proc.run([python, *PIP, "freeze", "--exclude-editable"], env=env, timeout=timeout)
    listed = proc.run(
        [python, *PIP, "list", "--editable", "--format=json"], env=env, timeout=timeout
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
