"""The exact package set of the live virtualenv, taken before ``pip install`` and put back after.

``pip install -r`` runs into the virtualenv the old workers serve from. Undoing it by installing
the previous requirements again is not enough: packages the release added would stay, and an
unpinned upgrade would not go back. So the install step takes a snapshot (``pip freeze --all``:
every distribution the interpreter sees, pip and setuptools included) and, to undo, uninstalls
what was added or changed, then reinstalls (``--no-deps``) the previous version of each one that
is still missing or different, and checks the result equals the snapshot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .. import proc
from ..releases.venvs import PIP, canonical

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==|@)")


@dataclass
class Snapshot:
    """{canonical name: the line ``pip freeze --all`` printed for it}."""

    lines: dict[str, str]

    def differences(self, other: Snapshot) -> list[str]:
        """What ``other`` has that this one has not, in words (sorted)."""
        words = []
        for name in sorted(set(self.lines) | set(other.lines)):
            mine, theirs = self.lines.get(name), other.lines.get(name)
            if mine == theirs:
                continue
            if mine is None:
                words.append(f"added {theirs}")
            elif theirs is None:
                words.append(f"removed {mine}")
            else:
                words.append(f"{mine} -> {theirs}")
        return words


class PackageError(Exception):
    """pip could not list or restore the packages; ``output`` is what it said."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.message, self.output = message, output


def snapshot(python: str, env: Mapping[str, str], timeout: float) -> Snapshot:
    result = proc.run([python, *PIP, "freeze", "--all"], env=env, timeout=timeout)
    if not result.ok:
        raise PackageError(f"pip freeze exited {result.returncode}", result.output)
    lines = {}
    for line in result.stdout.splitlines():
        line = line.strip()
        match = _NAME.match(line)
        if match:
            lines[canonical(match.group(1))] = line
        elif line and not line.startswith("#"):
            lines[line] = line  # an editable install: its whole line is its identity
    return Snapshot(lines)


def restore(python: str, env: Mapping[str, str], before: Snapshot, timeout: float) -> str:
    """Bring the interpreter's packages back to ``before``; returns what was done. Raises
    PackageError when pip fails or the result still differs."""
    now = snapshot(python, env, timeout)
    # pip itself is not uninstalled (it must run the rest): its old version is reinstalled below
    changed = [n for n, ln in now.lines.items() if before.lines.get(n) != ln and n != "pip"]
    output = []
    if changed:
        names = [_NAME.match(now.lines[n]).group(1) for n in changed if _NAME.match(now.lines[n])]
        ran = proc.run([python, *PIP, "uninstall", "-y", *names], env=env, timeout=timeout)
        output.append(ran.output)
        if not ran.ok:
            raise PackageError(f"pip uninstall exited {ran.returncode}", "\n".join(output))
    now = snapshot(python, env, timeout)
    missing = [line for n, line in before.lines.items() if now.lines.get(n) != line]
    if missing:
        args = [a for ln in missing for a in (["-e", ln[3:]] if ln.startswith("-e ") else [ln])]
        ran = proc.run([python, *PIP, "install", "--no-deps", *args], env=env, timeout=timeout)
        output.append(ran.output)
        if not ran.ok:
            raise PackageError(
                f"pip install of the previous versions exited {ran.returncode}", "\n".join(output)
            )
    left = before.differences(snapshot(python, env, timeout))
    if left:
        raise PackageError("the packages still differ: " + ", ".join(left), "\n".join(output))
    return (
        f"{len(changed)} removed, {len(missing)} reinstalled: the exact previous package set"
        if changed or missing
        else "the package set was unchanged"
    )
