"""Circuit breaker for the counter store: stop waiting on a Redis that keeps failing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kong_ace import observe

log = logging.getLogger("kong_ace.limits.breaker")

STORE = "redis"  # the store's name in metrics and `kong-ace status` (observe.breaker_changed)
FAILURES_TO_OPEN = 3  # consecutive slow failures (each waited for a timeout) that open it
OPEN_SECONDS = 5.0  # how long it stays open before one request probes Redis again

OPENED = "rate-limit store failed %d times in a row: not calling it for %.1f s"
REOPENED = "rate-limit store probe failed: not calling it for %.1f s"
CLOSED = "rate-limit store answers again"


class CircuitBreaker:
    """Closed, then open after N consecutive slow failures, then half-open: exactly one probe.

    Only failures that waited (a timeout: a blackholed, paused or unroutable Redis) count. A
    refused or reset connection fails in well under a millisecond, costs the request nothing
    and keeps being tried, so a restarted Redis or a promoted replica counts again at once.
    While open, `allow()` is False at once, so a request applies `fault_tolerant` without
    waiting. After `open_seconds` the first caller probes; the others still get False until the
    probe ends, so a blackholed Redis costs one timeout per interval, not one per request. The
    clock is injected (the limiter's), so tests move time instead of sleeping.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        failures: int = FAILURES_TO_OPEN,
        open_seconds: float = OPEN_SECONDS,
    ) -> None:
        self.clock = clock
        self.failures_to_open = failures
        self.open_seconds = open_seconds
        self._failures = 0
        self._open_until: float | None = None  # None: closed
        self._probing = False
        self._lock = threading.Lock()  # never held across I/O

    @property
    def is_open(self) -> bool:
        """True while calls are refused (open or half-open with a probe in flight)."""
        return self._open_until is not None

    def allow(self) -> bool:
        """May this call go to the store? False means: fail now, do not wait."""
        if self._open_until is None:  # closed: the hot path takes no lock
            return True
        with self._lock:
            if self._open_until is None:
                return True
            if self._probing or self.clock() < self._open_until:
                return False
            self._probing = True  # this caller is the probe
        observe.breaker_changed(STORE, observe.HALF_OPEN)
        return True

    def success(self) -> None:
        """The store answered: close."""
        if self._open_until is None and not self._failures:
            return
        with self._lock:
            was_open = self._open_until is not None
            self._failures = 0
            self._open_until = None
            self._probing = False
        if was_open:
            log.warning(CLOSED)
            observe.breaker_changed(STORE, observe.CLOSED)

    def failure(self, slow: bool = True) -> None:
        """The store failed: count a slow failure; open (again) on the probe's or the Nth."""
        if not slow and not self._probing:
            return  # fast: not worth stopping for, and not a sign that Redis is back either
        with self._lock:
            self._failures += 1
            probe = self._probing
            if not probe and self._failures < self.failures_to_open:
                return
            if self._open_until is not None and not probe:
                return  # already open: a call that started before it opened
            self._probing = False
            self._open_until = self.clock() + self.open_seconds
            failures = self._failures
        if probe:
            log.warning(REOPENED, self.open_seconds)
        else:
            log.error(OPENED, failures, self.open_seconds)
        observe.breaker_changed(STORE, observe.OPEN)
