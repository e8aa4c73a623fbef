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

# https://user:token@host -> https://***@host; also redis://:password@host (no user name) and a
# raw password holding "/" (https://u:pa/ss@host)
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^/\s:@]*:[^\s@]*|[^/\s:@]*)@"
)
# A name whose underscore-separated words include a secret word: DB_PASS, password, SECRET_KEY,
# PIP_INDEX_URL, AWS_SECRET_ACCESS_KEY, token (not "passed", not "tokenizer")
# PGPASSWORD: libpq's variable, one word; --api-key: a dash
_SECRET_WORD = (
    r"(?:TOKEN|PASSWORD|PGPASSWORD|PASSWD|PASS|PWD|SECRET|INDEX_URL|API[_-]KEY|ACCESS[_-]KEY"  # noqa: S105
    r"|PRIVATE[_-]KEY)"
)
_SECRET_NAME = rf"(?<![A-Za-z0-9])(?:[A-Za-z0-9]+_)*{_SECRET_WORD}(?:_[A-Za-z0-9]+)*(?![A-Za-z0-9])"
_QUOTED_OR_BARE = r"""(?:"(?P<dq>[^"\n]*)"|'(?P<sq>[^'\n]*)'|(?P<bare>[^\s'",;&}]+))"""
# NAME=value, NAME: value, NAME = "value", "name": "value", --password value, --token=value
_SECRET_ASSIGNMENT = re.compile(
    rf"""(?P<name>(?P<dash>--?)?{_SECRET_NAME}['"]?)(?P<sep>\s*[=:]\s*|(?(dash) +(?=\S)|(?!)))"""
    + _QUOTED_OR_BARE,
    re.IGNORECASE,
)
# Authorization: Bearer <token> (the scheme is kept, the credentials go)
_AUTHORIZATION = re.compile(
    r"(?P<head>\b(?:Proxy-)?Authorization\s*:\s*(?:(?:Bearer|Basic|Token|Digest)\s+)?)\S[^\n]*",
    re.IGNORECASE,
)
SECRET_ENV_HINTS = ("TOKEN", "PASSWORD", "SECRET", "PASSWD", "INDEX_URL", "API_KEY", "ACCESS_KEY")


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-looking environment variables, to scrub wherever they appear."""
    env = os.environ if env is None else env
    return [
        v for k, v in env.items() if len(v) >= 6 and any(h in k.upper() for h in SECRET_ENV_HINTS)
    ]


def project_secrets() -> list[str]:
    """This project's own secrets, by value: SECRET_KEY, the database passwords, WEBHOOK_SECRET
    and HEALTHZ_TOKEN (empty when Django is not configured)."""
    from django.conf import settings

    if not settings.configured:
        return []
    try:
        values = [getattr(settings, "SECRET_KEY", "")]
        values += [db.get("PASSWORD") for db in getattr(settings, "DATABASES", {}).values()]
        ours = getattr(settings, "ZERODEPLOY", None) or {}
        values += [ours.get("WEBHOOK_SECRET"), ours.get("HEALTHZ_TOKEN")]
    except Exception:  # noqa: BLE001 - redaction must never fail the output it cleans
        return []
    return [v for v in values if isinstance(v, str) and len(v) >= 6]


def _assignment(match: re.Match[str]) -> str:
    quote = '"' if match.group("dq") is not None else "'" if match.group("sq") is not None else ""
    return f"{match.group('name')}{match.group('sep')}{quote}***{quote}"


def redact(text: str, extra: Sequence[str] = ()) -> str:
    """Remove credentials from text meant for logs, records and pages."""
    text = _URL_CREDENTIALS.sub(lambda m: m.group("scheme") + "***@", text)
    text = _AUTHORIZATION.sub(lambda m: m.group("head") + "***", text)
    text = _SECRET_ASSIGNMENT.sub(_assignment, text)
    values = {v for v in (*secret_values(), *project_secrets(), *extra) if v}
    for value in sorted(values, key=len, reverse=True):  # a longer secret may hold a shorter
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


def python_env(
    cwd: Path | str, extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``base`` (default: the current environment) with ``cwd`` first on PYTHONPATH, for
    subprocesses that must import a project's code from a given tree."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.fspath(cwd), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    env.pop("PYTHONSTARTUP", None)
    if extra:
        env.update(extra)
    return env
