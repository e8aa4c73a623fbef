"""The health URL a deploy polls to verify the release: over TCP, or over Gunicorn's Unix socket.

Gunicorn often listens on a Unix socket only (``--bind unix:/run/gunicorn.sock``, Nginx in
front), so ``HEALTHZ_URL`` may name one: ``unix:/run/gunicorn.sock:/healthz/`` is the socket
path, a colon, then the request path. It is requested with ``http.client`` over an
``AF_UNIX`` socket. Without ``HEALTHZ_URL`` the deploy asks the socket the Gunicorn master
listens on (its ``--bind``): ``url_for_bind()`` turns a bind address into such a URL.
``release_id()`` reads the release the URL reports (the deploy's verify, the reload without
the hook, ``deploy --check``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import urllib.parse
from dataclasses import dataclass

UNIX_PREFIX = "unix:"
EXAMPLE = "'http://127.0.0.1:8000/healthz/' or 'unix:/run/gunicorn.sock:/healthz/'"
MAX_BODY = 1_000_000


def healthz_path() -> str | None:
    """Where the URLconf serves /healthz/, or None when django_zerodeploy.urls is not included."""
    from django.urls import NoReverseMatch, reverse

    try:
        return reverse("django_zerodeploy:healthz")
    except NoReverseMatch:
        return None


@dataclass(frozen=True)
class Target:
    """Where to send the GET: a TCP host and port, or a Unix socket path."""

    scheme: str  # http, https or unix
    host: str
    port: int | None
    path: str
    socket_path: str = ""


class BadURL(ValueError):
    """The value is not a health URL this client can request."""


def parse(url: str) -> Target:
    """``http(s)://host[:port]/path`` or ``unix:/socket/path:/request/path``."""
    if url.startswith(UNIX_PREFIX):
        rest = url[len(UNIX_PREFIX) :]
        sock, sep, path = rest.partition(":/")
        if not sock.startswith("/") or not sep:
            raise BadURL(
                f"{url!r}: a Unix socket URL is unix:SOCKET:PATH with an absolute socket path "
                "and a request path starting with '/', e.g. 'unix:/run/gunicorn.sock:/healthz/'"
            )
        return Target("unix", "localhost", None, "/" + path, socket_path=sock)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadURL(f"{url!r} must be an http://, https:// or unix: URL, e.g. {EXAMPLE}")
    try:
        port = parts.port
    except ValueError as exc:
        raise BadURL(f"{url!r}: {exc}") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, parts.hostname, port, path)


def problem(url: str) -> str | None:
    """Why ``url`` cannot be used (None when it can): for the settings check."""
    try:
        parse(url)
    except BadURL as exc:
        return str(exc)
    return None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _connection(target: Target, timeout: float) -> http.client.HTTPConnection:
    if target.scheme == "unix":
        return _UnixConnection(target.socket_path, timeout)
    if target.scheme == "https":
        return http.client.HTTPSConnection(target.host, target.port, timeout=timeout)
    return http.client.HTTPConnection(target.host, target.port, timeout=timeout)


def get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """(status, body) of a GET; raises OSError (unreachable, timeout) or BadURL. Any status
    is returned: a 503 from /healthz/ still names the release in its body."""
    target = parse(url)
    conn = _connection(target, timeout)
    try:
        conn.request("GET", target.path, headers={"Connection": "close", "Accept": "*/*"})
        resp = conn.getresponse()
        return resp.status, resp.read(MAX_BODY)
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer from {url}: {exc!r}") from exc
    finally:
        conn.close()


def read_release(url: str, timeout: float = 3.0) -> tuple[str | None, str]:
    """(``releaseId`` of ``url``, "") or (None, why there is none). A 503 (a draining or
    failing site) still carries the release in its body, so it is read too."""
    try:
        status, body = get(url, timeout=timeout)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # BadURL is a ValueError
        return None, f"{url}: {type(exc).__name__}: {exc}"
    with contextlib.suppress(ValueError, AttributeError):
        release = json.loads(body).get("releaseId")
        if isinstance(release, str) and release:
            return release, ""
    return None, f"{url} answered {status} without a releaseId"


def release_id(url: str, timeout: float = 3.0) -> str | None:
    """``releaseId`` from ``url``, or None when it is unreachable or names none."""
    return read_release(url, timeout)[0]


def url_for_bind(bind: str, path: str, cwd: str = "/") -> str | None:
    """The URL of ``path`` on a Gunicorn bind address (``unix:/x.sock``, ``host:port``,
    ``[::1]:8000``, ``0.0.0.0:8000``); None for what cannot be dialled (``fd://3``). A relative
    socket path is relative to the master's working directory ``cwd``."""
    if bind.startswith(UNIX_PREFIX):
        sock = os.path.join(cwd, bind[len(UNIX_PREFIX) :])
        return f"{UNIX_PREFIX}{sock}:{path}"
    if "://" in bind:
        return None
    host, port = bind, "8000"
    if bind.startswith("["):
        host, _, rest = bind[1:].partition("]")
        port = rest.lstrip(":") or port
    elif bind.count(":") == 1:
        host, port = bind.split(":")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    if not port.isdigit():
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"
