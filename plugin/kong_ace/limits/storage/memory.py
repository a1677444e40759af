"""In-process counters shared by every plugin instance of the process."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from kong_ace.limits.storage.base import Window

_SWEEP_EVERY = 60.0  # seconds of clock time between removals of idle counters


def _native_lock() -> Any:
    """An OS lock even when gevent has patched threading (the plugin server's default mode).

    gevent's patched Lock is a Python-level semaphore, ~1 % of the server's CPU on this path.
    A native lock is safe here only because nothing yields while it is held: no I/O, no
    logging, no gevent call inside ``acquire``. Keep it that way.
    """
    monkey = sys.modules.get("gevent.monkey")  # never imported: nothing is patched
    if monkey is not None and monkey.is_module_patched("threading"):
        return monkey.get_original("_thread", "allocate_lock")()
    return threading.Lock()


class MemoryStorage:
    """Thread-safe local counters: one record per (bucket, period), surviving config reloads."""

    def __init__(self) -> None:
        # (bucket, period) -> [window start, count in that window, count in the window before].
        # One small record per bucket and period (not one key per window) keeps the hot path at
        # a single dict lookup per limit and bounds memory without a TTL cache.
        self._records: dict[tuple[str, int], list[int]] = {}
        self._lock = threading.Lock()  # shared(): its factory may block (gevent-friendly)
        self._count_lock = _native_lock()  # acquire(): pure arithmetic, never yields
        self._next_sweep = float("-inf")
        self._shared: dict[Hashable, Any] = {}

    def acquire(
        self, bucket: str, windows: Sequence[Window], now: float
    ) -> tuple[bool, list[tuple[int, int]]]:
        """Charge one hit to every window if all have room; return (allowed, counts before)."""
        records = self._records
        counts: list[tuple[int, int]] = []
        with self._count_lock:
            if now >= self._next_sweep:
                self._sweep(now)
            allowed = True
            charged = []
            for period, limit, start, weight in windows:
                key = (bucket, period)
                rec = records.get(key)
                if rec is None:
                    rec = records[key] = [start, 0, 0]
                elif rec[0] < start:
                    # The window moved on: the old count becomes the previous window's count
                    # when adjacent, else nothing of it matters any more.
                    rec[2] = rec[1] if rec[0] == start - period else 0
                    rec[1] = 0
                    rec[0] = start
                # rec[0] > start only when the clock stepped back: count in the newer window.
                cur, prev = rec[1], rec[2]
                # Same expression as ratelimit.lua, so every store decides identically.
                if cur + prev * weight + 1 > limit:
                    allowed = False
                counts.append((cur, prev))
                charged.append(rec)
            if allowed:
                for rec in charged:
                    rec[1] += 1
        return allowed, counts

    def _sweep(self, now: float) -> None:
        """Drop records whose windows no longer count (caller holds the lock)."""
        stale = [k for k, rec in self._records.items() if rec[0] + 2 * k[1] <= now]
        for k in stale:
            del self._records[k]
        self._next_sweep = now + _SWEEP_EVERY

    def __len__(self) -> int:
        return len(self._records)

    def shared(self, key: Hashable, factory: Callable[[], Any]) -> Any:
        """Return the process-wide object stored under key, creating it once with factory."""
        # Derived stores (the Redis-synced counters) must outlive config reloads just like these
        # counters, so they hang off the same process-wide root.
        with self._lock:
            obj = self._shared.get(key)
            if obj is None:
                obj = self._shared[key] = factory()
            return obj

    def close(self) -> None:
        """Stop the background work of derived stores (tests; process exit needs nothing)."""
        with self._lock:
            shared = list(self._shared.values())
            self._shared.clear()
        for obj in shared:
            close = getattr(obj, "close", None)
            if close is not None:
                close()
