"""Rate limiting: fixed or sliding windows over a counter storage."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cachetools import TTLCache

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
PERIOD_NAMES = {v: k.capitalize() for k, v in PERIODS.items()}


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``limit`` requests per ``period`` seconds."""

    limit: int
    period: int


@dataclass(frozen=True, slots=True)
class RateResult:
    """The limiter's answer: admitted or not, and the headers that describe the quota."""

    allowed: bool
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after: int | None = None


ALLOWED_UNLIMITED = RateResult(True)


class StorageUnavailable(Exception):
    """The counter store could not be reached."""


class MemoryStorage:
    """Process-wide counters in memory, shared by every plugin instance; thread-safe."""

    def __init__(self, maxsize: int = 1_000_000, ttl: float = 2 * 86400 + 60) -> None:
        self.lock = threading.Lock()
        # Entries outlive the longest window plus the previous one a sliding window reads.
        self.counters: TTLCache[str, int] = TTLCache(maxsize=maxsize, ttl=ttl)


class Limiter:
    """Checks every limit and charges all of them only when all have room."""

    def __init__(
        self,
        storage: MemoryStorage,
        *,
        sliding: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._sliding = sliding
        self._clock = clock

    def consume(self, key: str, limits: tuple[Limit, ...]) -> RateResult:
        """Admit and charge one request against ``key``, or refuse without charging."""
        if not limits:
            return ALLOWED_UNLIMITED
        now = self._clock()
        counters = self._storage.counters
        plan = []
        with self._storage.lock:
            for lim in limits:
                start = now - now % lim.period
                cur_key = f"{key}|{lim.period}|{int(start)}"
                used = counters.get(cur_key, 0)
                if self._sliding:
                    prev = counters.get(f"{key}|{lim.period}|{int(start) - lim.period}", 0)
                    used_est = used + prev * (lim.period - (now - start)) / lim.period
                else:
                    used_est = used
                plan.append((lim, cur_key, used, used_est, start + lim.period - now))
            allowed = all(used_est + 1 <= lim.limit for lim, _, _, used_est, _ in plan)
            if allowed:
                for _, cur_key, used, _, _ in plan:
                    counters[cur_key] = used + 1
        return _result(allowed, plan)


def _result(allowed: bool, plan: list[Any]) -> RateResult:
    headers: dict[str, str] = {}
    tightest = None
    retry = 0
    for lim, _, _, used_est, reset in plan:
        spent = math.ceil(used_est) + (1 if allowed else 0)
        remaining = max(0, lim.limit - spent)
        name = PERIOD_NAMES.get(lim.period, str(lim.period))
        headers[f"X-RateLimit-Limit-{name}"] = str(lim.limit)
        headers[f"X-RateLimit-Remaining-{name}"] = str(remaining)
        if tightest is None or remaining < tightest[0]:
            tightest = (remaining, lim.limit, reset)
        if used_est + 1 > lim.limit:
            retry = max(retry, math.ceil(reset))
    assert tightest is not None
    headers["RateLimit-Limit"] = str(tightest[1])
    headers["RateLimit-Remaining"] = str(tightest[0])
    headers["RateLimit-Reset"] = str(max(1, math.ceil(tightest[2])))
    if allowed:
        return RateResult(True, headers)
    headers["Retry-After"] = str(max(1, retry))
    return RateResult(False, headers, max(1, retry))


def build_limiter(
    settings: Mapping[str, Any] | None, *, clock: Callable[[], float], storage: Any
) -> Limiter:
    """The limiter the ``rate_limiting`` settings ask for."""
    settings = settings or {}
    sliding = (settings.get("window_type") or "sliding") == "sliding"
    store = storage if storage is not None else MemoryStorage()
    return Limiter(store, sliding=sliding, clock=clock)
