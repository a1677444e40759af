"""Local counters synchronised with Redis in the background (rate_limiting.sync_rate > 0)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from kong_ace.limits.storage.base import StorageUnavailable, Window, counter_ttl
from kong_ace.limits.storage.redis import RedisStorage

log = logging.getLogger("kong_ace.limits.limiter")

_IDLE_SECONDS = 30.0  # the sync thread ends after this long without local hits or deltas


class SyncedStorage:
    """Decide locally on (last cluster total + local hits); push deltas, pull totals periodically.

    Like Kong's rate-limiting-advanced with sync_rate > 0: requests never wait for Redis, and the
    cluster may overshoot a limit by what other nodes admit between two syncs.
    """

    def __init__(
        self, redis_storage: RedisStorage, clock: Callable[[], float], sync_rate: float
    ) -> None:
        self.redis = redis_storage
        self.sync_rate = sync_rate
        self._clock = clock
        # (bucket, period) -> [window start, cluster total, local delta (not yet pushed),
        #                      previous window's cluster total, previous window's local delta]
        self._records: dict[tuple[str, int], list[int]] = {}
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()  # one sync at a time, or a delta could be pushed twice
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = False
        self._hits = False  # a local hit since the last sync
        self._failing = False

    def acquire(
        self, bucket: str, windows: Sequence[Window], now: float
    ) -> tuple[bool, list[tuple[int, int]]]:
        """Charge one hit to every window if all have room; return (allowed, counts before)."""
        records = self._records
        counts: list[tuple[int, int]] = []
        with self._lock:
            if self._thread is None and not self._closed:
                self._start()
            allowed = True
            charged = []
            for period, limit, start, weight in windows:
                key = (bucket, period)
                rec = records.get(key)
                if rec is None:
                    rec = records[key] = [start, 0, 0, 0, 0]
                elif rec[0] < start:
                    if rec[0] == start - period:
                        rec[3], rec[4] = rec[1], rec[2]  # its unpushed delta still gets pushed
                    else:
                        rec[3] = rec[4] = 0
                    rec[0], rec[1], rec[2] = start, 0, 0
                cur, prev = rec[1] + rec[2], rec[3] + rec[4]
                if cur + prev * weight + 1 > limit:
                    allowed = False
                counts.append((cur, prev))
                charged.append(rec)
            if allowed:
                for rec in charged:
                    rec[2] += 1
                self._hits = True
        return allowed, counts

    def sync_now(self) -> bool:
        """Push local deltas and pull cluster totals once; False when Redis was unreachable."""
        with self._sync_lock:
            return self._sync()

    def _sync(self) -> bool:
        now = self._clock()
        todo: list[tuple[tuple[str, int], int, int]] = []  # (record key, window start, delta)
        counters: list[tuple[str, int, int]] = []
        counter_key = self.redis.key  # hash-tagged in a Redis Cluster
        with self._lock:
            self._hits = False
            for key, rec in list(self._records.items()):
                bucket, period = key
                start = rec[0]
                if start + 2 * period <= now and not rec[2] and not rec[4]:
                    del self._records[key]  # nothing of it counts any more
                    continue
                # Every live counter is pulled, not only the busy ones: a node that was quiet
                # for a while must still decide on fresh cluster totals when traffic returns.
                for ws, delta in ((start, rec[2]), (start - period, rec[4])):
                    todo.append((key, ws, delta))
                    counters.append(
                        (counter_key(bucket, period, ws), delta, counter_ttl(period, start, now))
                    )
        if not counters:
            return True
        try:
            totals = self.redis.sync(counters)
        except StorageUnavailable as exc:
            if not self._failing:  # log once per outage, not every sync_rate seconds
                log.error("rate-limit sync to Redis failed, counting locally: %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.warning("rate-limit sync to Redis recovered")
            self._failing = False
        with self._lock:
            for (key, ws, delta), total in zip(todo, totals, strict=True):
                rec = self._records.get(key)
                if rec is None:
                    continue
                # Hits counted while the call was in flight stay in the delta for next time;
                # the record may also have moved on a window, making this its previous one.
                if rec[0] == ws:
                    rec[1] = total
                    rec[2] -= delta
                elif rec[0] == ws + key[1]:
                    rec[3] = total
                    rec[4] -= delta
        return True

    def _start(self) -> None:
        """Start the daemon sync thread (caller holds the lock)."""
        self._thread = threading.Thread(target=self._run, name="kong-ace-rl-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        idle = 0.0
        while True:
            self._wake.wait(self.sync_rate)
            if self._closed:
                return
            busy = self._hits  # hits since the last sync (a sync clears the flag)
            try:
                ok = self.sync_now()
            except Exception:  # never let the thread die: local counting would drift forever
                log.exception("rate-limit sync failed")
                ok = False
            with self._lock:
                # Deltas only come from hits, so no hits and a good sync mean nothing pending.
                idle = 0.0 if (busy or self._hits or not ok) else idle + self.sync_rate
                if idle >= _IDLE_SECONDS:
                    self._thread = None  # restarted by the next acquire
                    return

    def close(self) -> None:
        """Push what is pending and stop the sync thread."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.sync_now()

