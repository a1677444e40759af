"""Window strategies: which counters a request is checked against, and when it may retry."""

from __future__ import annotations

from collections.abc import Sequence

from kong_ace.limits.storage.base import Window


def reset_after(period: int, start: int, now: float) -> int:
    """Seconds until the window ends, as Kong's rate-limiting computes RateLimit-Reset."""
    return max(1, period - int(now - start))


class FixedWindow:
    """Clock-aligned windows (like Kong's rate-limiting): the count restarts at each boundary."""

    name = "fixed"

    def windows(self, pairs: Sequence[tuple[int, int]], now: float) -> list[Window]:
        """The (period, limit, start, weight) windows for these (period, limit) pairs at now."""
        return [(p, lim, int(now // p) * p, 0.0) for p, lim in pairs]

    def retry_after(self, window: Window, cur: int, prev: int, now: float) -> float:
        """Seconds until this denied window admits again: its end."""
        return reset_after(window[0], window[2], now)


class SlidingWindow:
    """Weighted previous window (like rate-limiting-advanced): usage = cur + prev * unexpired."""

    name = "sliding"

    def windows(self, pairs: Sequence[tuple[int, int]], now: float) -> list[Window]:
        """The (period, limit, start, weight) windows for these (period, limit) pairs at now."""
        out = []
        for p, lim in pairs:
            start = int(now // p) * p
            # Share of the previous window still inside the sliding period ending now.
            out.append((p, lim, start, (start + p - now) / p))
        return out

    def retry_after(self, window: Window, cur: int, prev: int, now: float) -> float:
        """Seconds until this denied window admits again if no other hit is counted meanwhile."""
        period, limit, start, _ = window
        end = start + period
        if limit < 1:
            return end - now  # never admits; say when the count restarts, as fixed windows do
        room = limit - 1 - cur
        if room >= 0:
            # Admits once the previous window's weighted share has decayed to `room`.
            return end - room * period / prev - now if prev > 0 else 0.0
        # This window alone is over: wait until it decays as the previous one of the next window.
        return end + period - (limit - 1) * period / cur - now
