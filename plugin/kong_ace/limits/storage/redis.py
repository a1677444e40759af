"""Redis counters: one EVALSHA round trip per request, atomic over every window.

A single Redis, a Redis Cluster or a Sentinel-managed primary, each through redis-py's own client
(`Redis`, `RedisCluster`, `Sentinel.master_for`): no topology logic of our own.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import ssl
import threading
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from kong_ace.limits.breaker import CircuitBreaker
from kong_ace.limits.redis_settings import CLUSTER, SENTINEL, RedisSettings
from kong_ace.limits.storage.base import (
    StorageUnavailable,
    Window,
    counter_key,
    counter_ttl,
    tagged_counter_key,
)

__all__ = ["RedisSettings", "RedisStorage", "client_for"]

log = logging.getLogger("kong_ace.limits.redis")

SCRIPT = resources.files("kong_ace.limits.storage").joinpath("ratelimit.lua").read_text("utf-8")
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
SYNC_BATCH = 500  # counters per sync call
SLOW_SHARE = 0.5  # of the smaller configured timeout: a failure this slow waited for one
REBUILD_SECONDS = 10.0  # a Cluster client failing this long in a row is built again
REBUILT = "redis cluster client failing for %.0f s: building it again from cluster_nodes"
ERROR_CHARS = 200  # of a redis-py error message in StorageUnavailable
CIRCUIT_OPEN = "redis: circuit open after repeated failures, not waiting for it"


class _SNIConnection(redis.SSLConnection):
    """TLS connection that can present a server name other than the host (Kong's server_name)."""

    def __init__(self, *, server_name: str | None = None, **kwargs: Any) -> None:
        self._server_name = server_name
        super().__init__(**kwargs)

    def _wrap_socket_with_ssl(self, sock: Any) -> Any:
        context = ssl.create_default_context()
        context.check_hostname = self.check_hostname
        context.verify_mode = self.cert_reqs
        return context.wrap_socket(sock, server_hostname=self._server_name or self.host)


Client = redis.Redis | RedisCluster
_clients: dict[RedisSettings, Client] = {}
_clients_lock = threading.Lock()
_FAILURES = (redis.exceptions.RedisError, RedisClusterException, OSError)


def client_for(settings: RedisSettings) -> Client:
    """One client (one connection pool per server) per distinct settings in the process."""
    with _clients_lock:
        client = _clients.get(settings)
        if client is None:
            # A Cluster client reads the slot map here: a failure raises and caches nothing,
            # so the next request tries again (behind the circuit breaker).
            client = _clients[settings] = _new_client(settings)
        return client


def forget_client(settings: RedisSettings, client: Client) -> None:
    """Drop this client from the process cache (if still there) and close its connections."""
    with _clients_lock:
        if _clients.get(settings) is client:
            del _clients[settings]
    with contextlib.suppress(*_FAILURES):  # its servers may be gone: no goodbye needed
        client.close()


def _connection_kwargs(s: RedisSettings) -> dict[str, Any]:
    """What every topology passes to redis-py's connections to the Redis servers."""
    kwargs: dict[str, Any] = {
        "username": s.username,
        "password": s.password,
        "socket_timeout": s.socket_seconds,
        "socket_connect_timeout": s.connect_seconds,
        # Kong's per-server pool size; redis-py raises when all are busy (the request then
        # gets fault_tolerant), where OpenResty would open one more.
        "max_connections": s.keepalive_pool_size,
    }
    if s.ssl:
        kwargs.update(
            ssl=True,
            ssl_cert_reqs="required" if s.ssl_verify else "none",
            ssl_check_hostname=s.ssl_verify,
        )
    return kwargs


# No retries anywhere: a request must not wait several timeouts when Redis is down; the pools
# already replace connections that Redis closed (restart) before handing them out.
def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _new_client(s: RedisSettings) -> Client:
    kwargs = _connection_kwargs(s)
    if s.topology == CLUSTER:
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in s.cluster_nodes],
            retry=_no_retry(),
            **kwargs,
        )
        # redis-py follows MOVED/ASK until this many tries (first try + redirections).
        client.RedisClusterRequestTTL = s.cluster_max_redirections + 1
        return client
    if s.topology == SENTINEL:
        sentinel_kwargs = {
            "username": s.sentinel_username,
            "password": s.sentinel_password,
            "socket_timeout": s.socket_seconds,
            "socket_connect_timeout": s.connect_seconds,
            "retry": _no_retry(),
        }
        sentinel = Sentinel(list(s.sentinel_nodes), sentinel_kwargs=sentinel_kwargs)
        # Every request writes its counters, so it always goes to the primary whatever
        # sentinel_role says (`slave`/`any` would only get READONLY errors; docs/rate-limits.md).
        return sentinel.master_for(s.sentinel_master, db=s.database, retry=_no_retry(), **kwargs)
    kwargs.update(host=s.host, port=s.port, db=s.database, retry=_no_retry())
    if s.ssl:
        kwargs.pop("ssl")
        kwargs.update(connection_class=_SNIConnection, server_name=s.server_name)
    return redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))


class RedisStorage:
    """Counters in Redis, checked and charged by ratelimit.lua in one round trip."""

    def __init__(
        self,
        client: Client | None = None,
        *,
        settings: RedisSettings | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if client is None and settings is None:
            raise TypeError("RedisStorage needs a client or settings")
        self._client = client
        self.breaker = breaker
        self.settings = settings
        self.cluster = isinstance(client, RedisCluster) or (
            settings is not None and settings.topology == CLUSTER
        )
        # A failure that took at least this long waited for a timeout (the breaker counts it).
        self._slow_seconds = (
            SLOW_SHARE * min(settings.connect_seconds, settings.socket_seconds)
            if settings is not None
            else 0.0
        )
        # Cluster: one request's keys must share a hash slot for the script to run there.
        self.key = tagged_counter_key if self.cluster else counter_key
        self._failing_since: float | None = None  # monotonic time of the first failure in a row
        self.monotonic = time.monotonic  # injectable: tests move it instead of waiting

    @property
    def client(self) -> Client:
        """The shared client, created on first use (a Cluster client connects when created)."""
        client = self._client
        if client is None:
            assert self.settings is not None
            client = self._client = client_for(self.settings)
        return client

    def eval(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ratelimit.lua by its SHA, loading it first if Redis does not have it."""
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            raise StorageUnavailable(CIRCUIT_OPEN)
        started = self.monotonic()  # real time spent waiting, not the limiter's clock
        try:
            client = self.client
            try:
                out = client.execute_command("EVALSHA", SCRIPT_SHA, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                # First use on this server (in a Cluster: on this primary), or it restarted, ran
                # SCRIPT FLUSH or was promoted from a replica. EVAL runs it and caches it there.
                out = client.execute_command("EVAL", SCRIPT, len(keys), *keys, *args)
        except _FAILURES as exc:
            now = self.monotonic()
            if breaker is not None:
                breaker.failure(slow=now - started >= self._slow_seconds)
            if self.cluster:
                self._rebuild_if_stuck(now)
            # redis-py's Sentinel and Cluster errors list every node: keep the log line short.
            raise StorageUnavailable(f"redis: {str(exc)[:ERROR_CHARS]}") from exc
        if breaker is not None:
            breaker.success()
        if self._failing_since is not None:
            self._failing_since = None
        return out

    def _rebuild_if_stuck(self, now: float) -> None:
        """After a Cluster kept failing for REBUILD_SECONDS, start over from cluster_nodes.

        redis-py refreshes its slot map after each failure; in the tests it was once seen to
        keep sending to a killed primary for a minute after its replica took over. A fresh
        client reads the map again from the configured nodes.
        """
        if self._failing_since is None:
            self._failing_since = now
            return
        client = self._client
        if now - self._failing_since < REBUILD_SECONDS or client is None or self.settings is None:
            return
        self._failing_since = None
        self._client = None
        forget_client(self.settings, client)
        log.warning(REBUILT, REBUILD_SECONDS)

    def acquire(
        self, bucket: str, windows: Sequence[Window], now: float
    ) -> tuple[bool, list[tuple[int, int]]]:
        """Charge one hit to every window if all have room; return (allowed, counts before)."""
        key = self.key
        keys: list[str] = []
        args: list[Any] = ["acquire"]
        for period, limit, start, weight in windows:
            keys.append(key(bucket, period, start))
            keys.append(key(bucket, period, start - period))
            args += (limit, repr(weight), counter_ttl(period, start, now))
        out = self.eval(keys, args)
        return out[0] == 1, [(out[i], out[i + 1]) for i in range(1, len(out), 2)]

    def sync(self, counters: Sequence[tuple[str, int, int]]) -> list[int]:
        """Add (key, delta, ttl) deltas and return the cluster total of each counter."""
        if self.cluster:
            return self._sync_by_slot(counters)
        totals: list[int] = []
        # Batches, so one sync never blocks Redis (single-threaded) for long.
        for i in range(0, len(counters), SYNC_BATCH):
            totals += self._sync_batch(counters[i : i + SYNC_BATCH])
        return totals

    def _sync_batch(self, batch: Sequence[tuple[str, int, int]]) -> list[int]:
        args: list[Any] = ["sync"]
        for _, delta, ttl in batch:
            args += (delta, ttl)
        return list(self.eval([c[0] for c in batch], args))

    def _sync_by_slot(self, counters: Sequence[tuple[str, int, int]]) -> list[int]:
        """One script call per hash slot (a script's keys must share one), in batches."""
        try:
            keyslot = self.client.keyslot  # type: ignore[union-attr]
        except _FAILURES as exc:
            raise StorageUnavailable(f"redis: {exc}") from exc
        slots: dict[int, list[int]] = {}
        for i, counter in enumerate(counters):
            slots.setdefault(keyslot(counter[0]), []).append(i)
        totals = [0] * len(counters)
        for indexes in slots.values():
            for j in range(0, len(indexes), SYNC_BATCH):
                part = indexes[j : j + SYNC_BATCH]
                for i, total in zip(part, self._sync_batch([counters[i] for i in part]),
                                    strict=True):
                    totals[i] = total
        return totals
