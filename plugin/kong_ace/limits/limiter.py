"""Rate limits: Limiter (window strategy + counter storage) and Kong-compatible headers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kong_ace.errors import ConfigError
from kong_ace.limits.breaker import CircuitBreaker
from kong_ace.limits.redis_settings import RedisSettings
from kong_ace.limits.storage.base import Storage, StorageUnavailable
from kong_ace.limits.storage.memory import MemoryStorage
from kong_ace.limits.windows import FixedWindow, SlidingWindow

__all__ = [
    "PERIODS",
    "PERIOD_NAMES",
    "Limit",
    "Limiter",
    "MemoryStorage",
    "RateResult",
    "StorageUnavailable",
    "build_limiter",
]

# `rate_limits[].duration` (singular; the catalog also accepts the plural) -> seconds.
PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
PERIOD_NAMES = {1: "Second", 60: "Minute", 3600: "Hour", 86400: "Day"}
MIN_SYNC_RATE = 0.02
# rate_limiting.headers: Kong's (RateLimit-Limit/-Remaining/-Reset, X-RateLimit-*), the IETF
# draft's structured fields (draft-ietf-httpapi-ratelimit-headers-11), or both.
HEADER_STYLES = ("kong", "ietf", "both")


class Limit(NamedTuple):
    """`limit` requests per `period` seconds."""

    limit: int
    period: int


@dataclass(slots=True)
class RateResult:
    """Outcome of one consume: response headers (Kong's names) and Retry-After on a denial."""

    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: int | None = None


class _Plan:
    """Per limits tuple, computed once: windows by decreasing period and their header names."""

    __slots__ = ("pairs", "names", "policy", "items", "single")

    def __init__(self, limits: Sequence[Limit]) -> None:
        strictest: dict[int, int] = {}
        for lim in limits:
            # Two limits on one period share one counter; only the smaller one can bind.
            strictest[lim.period] = min(lim.limit, strictest.get(lim.period, lim.limit))
        # Largest period first: on equal remaining, Kong reports the larger window.
        self.pairs = tuple(sorted(strictest.items(), reverse=True))
        self.names = tuple(
            (
                f"X-RateLimit-Limit-{PERIOD_NAMES.get(p, f'{p}s')}",
                f"X-RateLimit-Remaining-{PERIOD_NAMES.get(p, f'{p}s')}",
                str(lim),
            )
            for p, lim in self.pairs
        )
        # draft-ietf-httpapi-ratelimit-headers-11 §3: a List of Items whose value is a String
        # naming the policy, with q (quota) and w (window seconds); serialised as RFC 8941 §4.1.1
        # does (members joined by ", "). One policy per window, named after its period.
        names = [PERIOD_NAMES.get(p, f"{p}s").lower() for p, _ in self.pairs]
        self.policy = ", ".join(
            f'"{name}";q={lim};w={p}' for name, (p, lim) in zip(names, self.pairs, strict=True)
        )
        self.items = tuple(f'"{name}";r=' for name in names)  # §4: the RateLimit members
        self.single = False  # one window and Kong's headers only (set by the Limiter)


class Limiter:
    """Checks and charges a bucket's limits in one atomic storage call."""

    def __init__(
        self,
        storage: Storage,
        window: FixedWindow | SlidingWindow,
        clock: Callable[[], float] = time.time,
        *,
        hide_client_headers: bool = False,
        headers: str = "kong",
    ) -> None:
        self.storage = storage
        self.window = window
        self.clock = clock
        self.hide_client_headers = hide_client_headers
        self.kong_headers = headers in ("kong", "both")
        self.ietf_headers = headers in ("ietf", "both")
        self._plans: dict[tuple[Limit, ...], _Plan] = {}
        self._one_window = self.kong_headers and not self.ietf_headers  # see _Plan.single

    def consume(self, key: str, limits: Sequence[Limit]) -> RateResult:
        """Charge every limit if all have room, else nothing; raises StorageUnavailable."""
        if not limits:
            return RateResult(True, {})
        plan = self._plans.get(limits)  # type: ignore[arg-type]
        if plan is None:
            limits = tuple(limits)
            plan = self._plans[limits] = _Plan(limits)
            plan.single = self._one_window and len(plan.pairs) == 1
        now = self.clock()
        windows = self.window.windows(plan.pairs, now)
        allowed, counts = self.storage.acquire(key, windows, now)
        if allowed and plan.single and not self.hide_client_headers:
            # One window, Kong's headers only, admitted (the usual hit): the loop below in one
            # dict display.
            period, limit, start, weight = windows[0]
            cur, prev = counts[0]
            left = limit - cur - prev * weight - 1
            remaining = str(int(left)) if left > 0 else "0"
            lname, rname, lstr = plan.names[0]
            reset = period - int(now - start)
            return RateResult(True, {lname: lstr, rname: remaining, "RateLimit-Limit": lstr,
                                     "RateLimit-Remaining": remaining,
                                     "RateLimit-Reset": str(reset if reset > 1 else 1)}, None)

        retry_after = None
        denied_by: list[int] = []  # per window: seconds until it admits again, 0 if it does
        if not allowed:
            wait = 0.0
            for w, (cur, prev) in zip(windows, counts, strict=True):
                if cur + prev * w[3] + 1 > w[1]:
                    here = self.window.retry_after(w, cur, prev, now)
                    denied_by.append(max(1, math.ceil(here)))
                    wait = max(wait, here)
                else:
                    denied_by.append(0)
            retry_after = max(1, math.ceil(wait))
        if self.hide_client_headers:
            return RateResult(allowed, {}, retry_after)

        charged = 1 if allowed else 0  # a denied request is not counted
        headers: dict[str, str] = {}
        kong = self.kong_headers
        best = None
        best_rem = 0
        remainings: list[int] = []
        for w, (cur, prev), (lname, rname, lstr) in zip(windows, counts, plan.names, strict=True):
            left = w[1] - cur - prev * w[3] - charged
            remaining = int(left) if left > 0 else 0
            remainings.append(remaining)
            if kong:
                headers[lname] = lstr
                headers[rname] = str(remaining)
            # Lowest remaining wins; windows come largest first, so a tie keeps the larger.
            if best is None or remaining < best_rem:
                best, best_rem, best_l = w, remaining, lstr
        assert best is not None  # limits is not empty
        if kong:
            headers["RateLimit-Limit"] = best_l
            headers["RateLimit-Remaining"] = str(best_rem)
            if retry_after is None:
                # reset_after(), inlined: this runs on every counted request.
                reset = best[0] - int(now - best[2])
                headers["RateLimit-Reset"] = str(reset if reset > 1 else 1)
            else:
                headers["RateLimit-Reset"] = str(retry_after)
        if self.ietf_headers:
            headers["RateLimit-Policy"] = plan.policy
            headers["RateLimit"] = _service_limits(plan, windows, remainings, denied_by, now)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return RateResult(allowed, headers, retry_after)


def _service_limits(
    plan: _Plan, windows: Sequence[Any], remainings: list[int], denied_by: list[int], now: float
) -> str:
    """The draft's RateLimit field: per policy, r (requests left) and t (seconds that applies).

    t is the time to the window's end, or, for a window that refused this request, when it
    admits again (so it never exceeds Retry-After, §6).
    """
    parts = []
    for i, (item, w) in enumerate(zip(plan.items, windows, strict=True)):
        t = denied_by[i] if denied_by and denied_by[i] else max(1, w[0] - int(now - w[2]))
        parts.append(f"{item}{remainings[i]};t={t}")
    return ", ".join(parts)


def build_limiter(
    settings: dict[str, Any] | None,
    *,
    clock: Callable[[], float] = time.time,
    storage: MemoryStorage | None = None,
) -> Limiter:
    """A Limiter for config["rate_limiting"]; storage is the process-wide MemoryStorage."""
    settings = settings or {}
    root = storage if storage is not None else MemoryStorage()

    window_type = settings.get("window_type") or "sliding"
    if window_type not in ("fixed", "sliding"):
        raise ConfigError(
            "rate_limiting.window_type", f"must be 'fixed' or 'sliding', got {window_type!r}"
        )
    window = FixedWindow() if window_type == "fixed" else SlidingWindow()
    hide = bool(settings.get("hide_client_headers"))
    style = settings.get("headers") or "kong"
    if style not in HEADER_STYLES:
        raise ConfigError(
            "rate_limiting.headers", f"'{style}' is not one of {', '.join(HEADER_STYLES)}"
        )

    sync_rate = settings.get("sync_rate")
    store: Storage
    if sync_rate is None:
        store = root
    else:
        if isinstance(sync_rate, bool) or not isinstance(sync_rate, (int, float)):
            raise ConfigError("rate_limiting.sync_rate", "must be a number of seconds")
        if sync_rate != 0 and not sync_rate >= MIN_SYNC_RATE:
            raise ConfigError("rate_limiting.sync_rate", f"must be 0 or at least {MIN_SYNC_RATE}")
        # Imported here, not at the top: `import kong_ace` must not import redis and ssl, so the
        # plugin server can still monkey-patch them for gevent after importing the package.
        from kong_ace.limits.storage.redis import RedisStorage
        from kong_ace.limits.storage.synced import SyncedStorage

        redis_settings = RedisSettings.from_config(settings.get("redis"))
        # With sync_rate 0 requests wait on Redis: a breaker (one per Redis in the process,
        # surviving config reloads like the counters) stops that while it keeps failing. The
        # synced store never makes a request wait on Redis, so its sync thread needs none.
        breaker = (
            root.shared(("breaker", redis_settings), lambda: CircuitBreaker(clock))
            if sync_rate == 0
            else None
        )
        redis_store = RedisStorage(settings=redis_settings, breaker=breaker)
        if sync_rate == 0:
            store = redis_store
        else:
            # Shared under the process-wide root so local counts survive config reloads.
            synced = root.shared(
                ("synced", redis_settings),
                lambda: SyncedStorage(redis_store, clock, float(sync_rate)),
            )
            synced.sync_rate = float(sync_rate)
            store = synced
    return Limiter(store, window, clock, hide_client_headers=hide, headers=style)
