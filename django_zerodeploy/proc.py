"""The one helper that runs subprocesses: argument lists only, a timeout, output captured
and redacted. Never ``shell=True``."""

from __future__ import annotations

import math
import os
import re
import selectors
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


# Bytes of each stream kept in memory (the tail); a build log is far below this.
OUTPUT_LIMIT = 4 * 1024 * 1024
# How long output is still read after the command itself exited: a daemon it left behind
# may hold the pipe open for its whole life.
EXIT_GRACE = 2.0
_HELD_OPEN = (
    "\n[the command exited but a process it left behind kept its output open; stopped reading]"
)


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 300,
    input: str | None = None,
    output_limit: int = OUTPUT_LIMIT,
) -> ProcResult:
    """Run ``args`` and capture its output (the last ``output_limit`` bytes of each stream).
    The timeout bounds the whole call, reading included, and kills the whole process group."""
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
            start_new_session=True,
        )
    except OSError as exc:
        return _not_started(argv, cwd, exc)
    deadline = None if timeout is None else started + timeout
    pipes = _Pipes(popen, input, output_limit)
    try:
        timed_out, held = _communicate(popen, pipes, deadline)
    except BaseException:
        _kill_group(popen.pid)
        popen.wait()
        raise
    finally:
        pipes.close()
    stdout, stderr = pipes.out.text(), pipes.err.text()
    if timed_out:
        stderr += f"\n[timed out after {timeout:g} s and was killed]"
    elif held:
        stderr += _HELD_OPEN
    return ProcResult(argv, popen.returncode, stdout, stderr, time.monotonic() - started, timed_out)


def _communicate(
    popen: subprocess.Popen, pipes: _Pipes, deadline: float | None
) -> tuple[bool, bool]:
    """Feed and read the command until its output closes, the deadline passes, or a short grace
    after it exited. Returns (timed out, output left open by a descendant)."""
    pipes.pump(deadline)
    if popen.poll() is None:
        try:
            popen.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(popen.pid)
            popen.wait()
            pipes.pump(time.monotonic() + 0.5)  # what the killed group wrote last
            return True, False
    return False, pipes.open


class _Capture:
    """The bytes read from one stream, only the last ``limit`` kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.cut = False

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.limit:  # trim in batches, not on every chunk
            del self.data[: len(self.data) - self.limit]
            self.cut = True

    def text(self) -> str:
        cut = self.cut or len(self.data) > self.limit
        data = bytes(self.data[-self.limit :])
        if cut:  # never start inside a UTF-8 character
            data = data.lstrip(_CONTINUATION_BYTES)
        body = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
        return f"[... output cut, last {self.limit} bytes kept ...]\n{body}" if cut else body


_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))


class _Pipes:
    """The command's stdin, stdout and stderr, multiplexed without blocking."""

    def __init__(self, popen: subprocess.Popen, input: str | None, limit: int) -> None:
        self.popen = popen
        self.out, self.err = _Capture(limit), _Capture(limit)
        self.pending = memoryview((input or "").encode("utf-8"))
        self.selector = selectors.DefaultSelector()
        for stream, capture in ((popen.stdout, self.out), (popen.stderr, self.err)):
            os.set_blocking(stream.fileno(), False)
            self.selector.register(stream, selectors.EVENT_READ, capture)
        if popen.stdin is not None:
            os.set_blocking(popen.stdin.fileno(), False)
            self.selector.register(popen.stdin, selectors.EVENT_WRITE, None)
        self.exited_at: float | None = None

    @property
    def open(self) -> bool:
        """Whether some output stream is still open (held by the command or a descendant)."""
        return any(key.data is not None for key in self.selector.get_map().values())

    def pump(self, deadline: float | None) -> None:
        """Move data until both output streams close, ``deadline`` passes, or EXIT_GRACE after
        the command exited."""
        while self.open:
            now = time.monotonic()
            if self.exited_at is None and self.popen.poll() is not None:
                self.exited_at = now
            until = deadline
            if self.exited_at is not None:
                until = min(until or math.inf, self.exited_at + EXIT_GRACE)
            if until is not None and now >= until:
                return
            wait = 0.05 if self.exited_at is None else until - now
            for key, _ in self.selector.select(wait if until is None else min(wait, until - now)):
                self._move(key)

    def _move(self, key: selectors.SelectorKey) -> None:
        if key.data is None:  # stdin ready for more
            try:
                written = os.write(key.fd, self.pending[:65536])
            except BrokenPipeError:
                written = len(self.pending)
            self.pending = self.pending[written:]
            if not self.pending:
                self._drop(key.fileobj)
            return
        chunk = os.read(key.fd, 65536)
        if chunk:
            key.data.add(chunk)
        else:
            self._drop(key.fileobj)

    def _drop(self, stream) -> None:
        self.selector.unregister(stream)
        stream.close()

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            self._drop(key.fileobj)
        self.selector.close()


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
