"""Redis counters: one EVALSHA round trip per request, atomic over every window."""

from __future__ import annotations

import hashlib
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kong_ace.errors import ConfigError
from kong_ace.limits.storage.base import StorageUnavailable, Window, counter_key, counter_ttl

SCRIPT = resources.files("kong_ace.limits.storage").joinpath("ratelimit.lua").read_text("utf-8")
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
SYNC_BATCH = 500  # counters per sync call


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """`rate_limiting.redis` as Kong's rate-limiting plugins define it (timeout in ms)."""

    host: str
    port: int = 6379
    database: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    ssl_verify: bool = False
    server_name: str | None = None
    timeout: int = 2000

    @classmethod
    def from_config(cls, conf: Any, where: str = "rate_limiting.redis") -> RedisSettings:
        """Validate the config block (Kong sends unset fields as null) or raise ConfigError."""
        if not isinstance(conf, dict):
            raise ConfigError(where, "is required when sync_rate is set")
        host = conf.get("host")
        if not isinstance(host, str) or not host:
            raise ConfigError(f"{where}.host", "is required when sync_rate is set")
        values: dict[str, Any] = {"host": host}
        for name, kind, low, high in (
            ("port", int, 0, 65535),
            ("database", int, 0, None),
            ("timeout", int, 1, None),
        ):
            value = conf.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ConfigError(f"{where}.{name}", f"must be an integer, got {value!r}")
            if value < low or (high is not None and value > high):
                raise ConfigError(f"{where}.{name}", f"out of range: {value}")
            values[name] = value
        for name in ("username", "password", "server_name"):
            value = conf.get(name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{where}.{name}", "must be a string")
            values[name] = value or None
        for name in ("ssl", "ssl_verify"):
            value = conf.get(name)
            if value is not None and not isinstance(value, bool):
                raise ConfigError(f"{where}.{name}", "must be a boolean")
            values[name] = bool(value)
        return cls(**values)


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


_clients: dict[RedisSettings, redis.Redis] = {}
_clients_lock = threading.Lock()


def client_for(settings: RedisSettings) -> redis.Redis:
    """One client (one connection pool) per distinct settings in the process."""
    with _clients_lock:
        client = _clients.get(settings)
        if client is None:
            client = _clients[settings] = _new_client(settings)
        return client


def _new_client(s: RedisSettings) -> redis.Redis:
    seconds = s.timeout / 1000.0
    kwargs: dict[str, Any] = {
        "host": s.host,
        "port": s.port,
        "db": s.database,
        "username": s.username,
        "password": s.password,
        "socket_timeout": seconds,
        "socket_connect_timeout": seconds,
        # No retries: a request must not wait several timeouts when Redis is down; the pool
        # already replaces connections that Redis closed (restart) before handing them out.
        "retry": Retry(NoBackoff(), 0),
    }
    if s.ssl:
        kwargs.update(
            connection_class=_SNIConnection,
            server_name=s.server_name,
            ssl_cert_reqs="required" if s.ssl_verify else "none",
            ssl_check_hostname=s.ssl_verify,
        )
    return redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))


class RedisStorage:
    """Counters in Redis, checked and charged by ratelimit.lua in one round trip."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def eval(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ratelimit.lua by its SHA, loading it first if Redis does not have it."""
        try:
            try:
                return self.client.execute_command("EVALSHA", SCRIPT_SHA, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                # First use on this server, or it restarted / ran SCRIPT FLUSH.
                self.client.execute_command("SCRIPT", "LOAD", SCRIPT)
                return self.client.execute_command("EVALSHA", SCRIPT_SHA, len(keys), *keys, *args)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StorageUnavailable(f"redis: {exc}") from exc

    def acquire(
        self, bucket: str, windows: Sequence[Window], now: float
    ) -> tuple[bool, list[tuple[int, int]]]:
        """Charge one hit to every window if all have room; return (allowed, counts before)."""
        keys: list[str] = []
        args: list[Any] = ["acquire"]
        for period, limit, start, weight in windows:
            keys.append(counter_key(bucket, period, start))
            keys.append(counter_key(bucket, period, start - period))
            args += (limit, repr(weight), counter_ttl(period, start, now))
        out = self.eval(keys, args)
        return out[0] == 1, [(out[i], out[i + 1]) for i in range(1, len(out), 2)]

    def sync(self, counters: Sequence[tuple[str, int, int]]) -> list[int]:
        """Add (key, delta, ttl) deltas and return the cluster total of each counter."""
        totals: list[int] = []
        # Batches, so one sync never blocks Redis (single-threaded) for long.
        for i in range(0, len(counters), SYNC_BATCH):
            batch = counters[i : i + SYNC_BATCH]
            args: list[Any] = ["sync"]
            for _, delta, ttl in batch:
                args += (delta, ttl)
            totals += self.eval([c[0] for c in batch], args)
        return totals
