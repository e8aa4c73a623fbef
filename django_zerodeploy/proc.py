"""The one helper that runs subprocesses: argument lists only, a timeout, output captured
and redacted. Never ``shell=True``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# https://user:token@host -> https://***@host; also redis://:password@host (no user name)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]*(?::[^/\s@]*)?@")
# Environment-style secrets: PIP_INDEX_URL=..., *_TOKEN=..., *_PASSWORD=..., *_SECRET=...
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<name>\b[A-Z0-9_]*(?:TOKEN|PASSWORD|SECRET|PASSWD|INDEX_URL|API_KEY|ACCESS_KEY)[A-Z0-9_]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<value>[^\s'\"]+)",
)
SECRET_ENV_HINTS = ("TOKEN", "PASSWORD", "SECRET", "PASSWD", "INDEX_URL", "API_KEY", "ACCESS_KEY")


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-looking environment variables, to scrub wherever they appear."""
    env = os.environ if env is None else env
    return [
        v for k, v in env.items() if len(v) >= 6 and any(h in k.upper() for h in SECRET_ENV_HINTS)
    ]


def redact(text: str, extra: Sequence[str] = ()) -> str:
    """Remove credentials from text meant for logs and records."""
    text = _URL_CREDENTIALS.sub(lambda m: m.group("scheme") + "***@", text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: m.group("name") + m.group("sep") + "***", text)
    for value in (*secret_values(), *extra):
        if value:
            text = text.replace(value, "***")
    return text


def tail(text: str, limit: int) -> str:
    """The last ``limit`` bytes of text (UTF-8), marked when cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return f"[... output cut, last {limit} bytes kept ...]\n" + data[-limit:].decode(
        "utf-8", "ignore"
    )


@dataclass
class ProcResult:
    """What a finished (or timed-out) command did."""

    args: list[str]
    returncode: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    timed_out: bool = False
    extra_secrets: list[str] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def output(self) -> str:
        """stdout and stderr together, redacted."""
        joined = self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr
        return redact(joined, self.extra_secrets)

    @property
    def command(self) -> str:
        return redact(" ".join(self.args), self.extra_secrets)

    def last_lines(self, count: int = 15) -> str:
        return "\n".join(self.output.strip().splitlines()[-count:])


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 300,
    input: str | None = None,
) -> ProcResult:
    """Run ``args`` and capture its output. A timeout kills the whole process group."""
    argv = [os.fspath(a) for a in args]
    started = time.monotonic()
    try:
        popen = subprocess.Popen(
            argv,
            cwd=os.fspath(cwd) if cwd else None,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        return _not_started(argv, cwd, exc)
    try:
        stdout, stderr = popen.communicate(input=input, timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        _kill_group(popen.pid)
        stdout, stderr = popen.communicate()
        stderr += f"\n[timed out after {timeout:g} s and was killed]"
        timed_out = True
    except BaseException:
        _kill_group(popen.pid)
        popen.wait()
        raise
    return ProcResult(argv, popen.returncode, stdout, stderr, time.monotonic() - started, timed_out)


def _not_started(argv: list[str], cwd: str | os.PathLike[str] | None, exc: OSError) -> ProcResult:
    """The command could not start: say whether the working directory or the command is to
    blame (both raise FileNotFoundError; ``exc.filename`` tells which)."""
    if cwd and exc.filename is not None and os.fspath(exc.filename) == os.fspath(cwd):
        return ProcResult(argv, 126, "", f"working directory {os.fspath(cwd)}: {exc.strerror}")
    if isinstance(exc, FileNotFoundError):
        return ProcResult(argv, 127, "", f"{argv[0]}: command not found ({exc.strerror})")
    return ProcResult(argv, 126, "", f"{argv[0]}: {exc.strerror or exc}")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def python_env(cwd: Path | str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment with ``cwd`` first on PYTHONPATH, for subprocesses that must
    import a project's code from a given tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.fspath(cwd), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    env.pop("PYTHONSTARTUP", None)
    if extra:
        env.update(extra)
    return env
