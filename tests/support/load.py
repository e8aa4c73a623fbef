"""A bounded load generator on loopback: a fixed number of client threads, a hard time limit,
one new connection per request (as a load balancer's health-checked traffic would be), and a
record of every request's status, release marker and latency."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .gunicorn import connection

MAX_SECONDS = 300  # a load never outlives this, whatever the test does
COVER_WAIT = 60  # how long operation() waits for a request on each side of the operation


@dataclass
class Hit:
    started: float
    latency: float
    status: int | None
    marker: str | None
    error: str | None = None


@dataclass
class LoadReport:
    hits: list[Hit] = field(default_factory=list)
    # the load ended by itself (max_seconds or max_requests) before the test stopped it: the
    # tail of what the test did was not measured
    cut_short: bool = False
    # (start, end) of the operation the load measured, in time.monotonic(): see operation()
    window: tuple[float, float] | None = None

    @property
    def total(self) -> int:
        return len(self.hits)

    @property
    def failures(self) -> list[Hit]:
        return [h for h in self.hits if h.status != 200]

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def markers(self) -> Counter[str | None]:
        return Counter(h.marker for h in self.hits if h.status == 200)

    def percentile(self, q: float) -> float:
        values = sorted(h.latency for h in self.hits)
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(q * len(values)))]

    @property
    def p50(self) -> float:
        return self.percentile(0.50)

    @property
    def p99(self) -> float:
        return self.percentile(0.99)

    @property
    def max(self) -> float:
        return max((h.latency for h in self.hits), default=0.0)

    @property
    def last_marker(self) -> str | None:
        ok = [h for h in self.hits if h.status == 200]
        return max(ok, key=lambda h: h.started + h.latency).marker if ok else None

    def assert_covered(self, window: tuple[float, float] | None = None) -> None:
        """The load ran through the whole operation: requests before it began and after it
        ended, and it was not cut short. Zero failures alone would also pass with no load."""
        began, ended = window or self.window or (None, None)
        assert began is not None and ended is not None, "no operation was timed (operation())"
        assert self.total > 0, "the load generator made no request"
        assert not self.cut_short, f"the load ended before the test stopped it: {self.summary()}"
        assert any(h.started + h.latency <= began for h in self.hits), (
            f"no request completed before the operation began: {self.summary()}"
        )
        assert any(h.started >= ended for h in self.hits), (
            f"no request started after the operation ended: {self.summary()}"
        )

    def summary(self) -> str:
        errors = Counter(h.error or str(h.status) for h in self.failures)
        return (
            f"{self.total} requests, {self.failed} failed {dict(errors)}, "
            f"p50 {self.p50 * 1000:.1f} ms, p99 {self.p99 * 1000:.1f} ms, max {self.max * 1000:.1f} ms, "
            f"releases {dict(self.markers)}"
        )


class LoadGenerator:
    """``with LoadGenerator(port=...) as load: ...; report = load.report``."""

    def __init__(
        self,
        port: int | None = None,
        *,
        uds: str | None = None,
        path: str = "/",
        clients: int = 4,
        max_seconds: float = 120,
        max_requests: int = 200_000,
        timeout: float = 15,
        pause: float = 0.0,
        marker_header: str = "X-Example-Release",
    ) -> None:
        self.port, self.uds, self.path = port, uds, path
        self.clients = clients
        self.max_seconds = min(max_seconds, MAX_SECONDS)
        self.max_requests = max_requests
        self.timeout = timeout
        self.pause = pause
        self.marker_header = marker_header
        self.report = LoadReport()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._began = 0.0

    def _one(self) -> Hit:
        started = time.monotonic()
        try:
            conn = connection(self.port, self.uds, self.timeout)
            conn.request("GET", self.path, headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            return Hit(
                started, time.monotonic() - started, resp.status, resp.getheader(self.marker_header)
            )
        except Exception as exc:  # noqa: BLE001 - every failure is a data point
            return Hit(started, time.monotonic() - started, None, None, type(exc).__name__)

    def _client(self, deadline: float) -> None:
        while not self._stop.is_set():
            if time.monotonic() >= deadline:
                self.report.cut_short = True
                return
            hit = self._one()
            with self._lock:
                if len(self.report.hits) >= self.max_requests:
                    self.report.cut_short = True
                    return
                self.report.hits.append(hit)
            if self.pause:
                time.sleep(self.pause)

    def wait_for_request(self, after: float, timeout: float = COVER_WAIT) -> None:
        """Block until a request started at or after ``after`` has completed (bounded)."""
        deadline = time.monotonic() + timeout
        running = lambda: any(t.is_alive() for t in self._threads)  # noqa: E731
        while time.monotonic() < deadline and not self._stop.is_set() and running():
            with self._lock:
                if any(h.started >= after for h in reversed(self.report.hits)):
                    return
            time.sleep(0.02)

    def begin(self) -> None:
        """The operation starts now, once a request has completed (see operation())."""
        self.wait_for_request(after=0.0)
        self._began = time.monotonic()

    def end(self) -> None:
        """The operation ended now; wait until a request started after it has completed."""
        ended = time.monotonic()
        self.report.window = (self._began, ended)
        self.wait_for_request(after=ended)

    @contextmanager
    def operation(self) -> Iterator[None]:
        """Time what the ``with`` block does, so that ``report.assert_covered()`` can tell
        whether the load ran through all of it: the block starts once a request has
        completed, and on leaving, waits until a request started after it has completed."""
        self.begin()
        yield
        self.end()

    def start(self) -> LoadGenerator:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.clients):
            t = threading.Thread(target=self._client, args=(deadline,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> LoadReport:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        return self.report

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
