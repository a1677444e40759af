"""The counter-store protocol shared by every rate-limit storage backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# One window to check and charge: (period seconds, limit, window start, weight of the previous
# window). A fixed window has weight 0; a sliding one weights the previous window's count.
Window = tuple[int, int, int, float]


class StorageUnavailable(Exception):
    """The rate-limit store could not be reached."""


class Storage(Protocol):
    """Atomic check-and-charge over the windows of one bucket."""

    def acquire(
        self, bucket: str, windows: Sequence[Window], now: float
    ) -> tuple[bool, list[tuple[int, int]]]:
        """Charge one hit to every window if all have room; return (allowed, counts before)."""
        ...


def counter_key(bucket: str, period: int, start: int) -> str:
    """Redis key of one window's counter; stable across config reloads."""
    return f"ace:rl:{bucket}|{period}|{start}"


def tagged_counter_key(bucket: str, period: int, start: int) -> str:
    """Redis Cluster key of one window's counter: the bucket is its hash tag.

    Every window of a bucket then lives in one hash slot, so one script call checks and charges
    them all atomically. `%` and `}` are escaped so the tag is the whole bucket (a `}` inside it
    would end the tag early, and a leading one would make it empty, hashing the whole key).
    """
    if "}" in bucket or "%" in bucket:
        bucket = bucket.replace("%", "%25").replace("}", "%7D")
    return f"ace:rl:{{{bucket}}}|{period}|{start}"


def counter_ttl(period: int, start: int, now: float) -> int:
    """Seconds a counter must live: its window and the next, where it is the previous window."""
    # The 10 s floor keeps sub-minute counters alive across small clock differences between nodes.
    return max(10, int(start + 2 * period - now) + 1)
