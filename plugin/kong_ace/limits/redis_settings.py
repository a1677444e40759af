"""`rate_limiting.redis`: Kong ACE's Redis settings (single, Cluster or Sentinel), validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kong_ace.errors import ConfigError

# Kong ACE's defaults (rate-limiting-advanced's redis record): timeouts in milliseconds.
DEFAULT_TIMEOUT_MS = 2000
DEFAULT_POOL_SIZE = 256
DEFAULT_MAX_REDIRECTIONS = 5
SENTINEL_ROLES = ("master", "slave", "any")
MAX_MS = 2**31 - 2

REQUIRED_WHEN_SYNCED = "is required when sync_rate is set"
EXCLUSIVE_TOPOLOGIES = (
    "cannot be combined with sentinel_master/sentinel_nodes: a Redis is either a Cluster "
    "or Sentinel-managed"
)
SENTINEL_NEEDS_NODES = "is required with sentinel_master (the sentinels to ask for the primary)"
SENTINEL_NEEDS_MASTER = "is required with sentinel_nodes (the name the sentinels monitor)"
CLUSTER_ONE_DATABASE = "must be 0 with cluster_nodes: a Redis Cluster has database 0 only"

SINGLE, CLUSTER, SENTINEL = "single", "cluster", "sentinel"

Node = tuple[str, int]


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """One Redis deployment and how to talk to it; hashable, so one client per distinct value."""

    host: str | None = None
    port: int = 6379
    database: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    ssl_verify: bool = False
    server_name: str | None = None
    # Kong's older single `timeout` applies to each of the three left unset (None).
    timeout: int = DEFAULT_TIMEOUT_MS
    connect_timeout: int | None = None
    send_timeout: int | None = None
    read_timeout: int | None = None
    keepalive_pool_size: int = DEFAULT_POOL_SIZE
    cluster_nodes: tuple[Node, ...] = ()
    cluster_max_redirections: int = DEFAULT_MAX_REDIRECTIONS
    sentinel_master: str | None = None
    sentinel_nodes: tuple[Node, ...] = ()
    sentinel_role: str = "master"
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    @property
    def connect_seconds(self) -> float:
        """Connect timeout in seconds."""
        return (self.connect_timeout or self.timeout) / 1000.0

    @property
    def socket_seconds(self) -> float:
        """Send/receive timeout in seconds: redis-py has one for both, so the larger of the two."""
        return max(self.send_timeout or self.timeout, self.read_timeout or self.timeout) / 1000.0

    @property
    def topology(self) -> str:
        """`cluster` with cluster_nodes, `sentinel` with sentinel_master, else `single`."""
        if self.cluster_nodes:
            return CLUSTER
        if self.sentinel_master:
            return SENTINEL
        return SINGLE

    def __repr__(self) -> str:  # never show the passwords (logs, error messages)
        where = {SINGLE: f"{self.host}:{self.port}", CLUSTER: f"cluster {self.cluster_nodes}",
                 SENTINEL: f"sentinel {self.sentinel_master} {self.sentinel_nodes}"}
        return f"RedisSettings({where[self.topology]})"

    @classmethod
    def from_config(cls, conf: Any, where: str = "rate_limiting.redis") -> RedisSettings:
        """Validate the config block (Kong sends unset fields as null) or raise ConfigError."""
        if not isinstance(conf, dict):
            raise ConfigError(where, REQUIRED_WHEN_SYNCED)
        values: dict[str, Any] = {}
        for name, low, high in (
            ("port", 0, 65535),
            ("database", 0, None),
            ("connect_timeout", 1, MAX_MS),
            ("send_timeout", 1, MAX_MS),
            ("read_timeout", 1, MAX_MS),
            ("timeout", 1, MAX_MS),
            ("keepalive_pool_size", 1, MAX_MS),
            ("cluster_max_redirections", 0, 1000),
        ):
            value = _integer(conf.get(name), f"{where}.{name}", low, high)
            if value is not None:
                values[name] = value
        for name in ("host", "username", "password", "server_name", "sentinel_master",
                     "sentinel_username", "sentinel_password"):
            value = conf.get(name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{where}.{name}", "must be a string")
            values[name] = value or None
        for name in ("ssl", "ssl_verify"):
            value = conf.get(name)
            if value is not None and not isinstance(value, bool):
                raise ConfigError(f"{where}.{name}", "must be a boolean")
            values[name] = bool(value)
        role = conf.get("sentinel_role")
        if role is not None:
            if role not in SENTINEL_ROLES:
                raise ConfigError(f"{where}.sentinel_role",
                                  f"'{role}' is not one of {', '.join(SENTINEL_ROLES)}")
            values["sentinel_role"] = role
        values["cluster_nodes"] = _nodes(conf.get("cluster_nodes"), f"{where}.cluster_nodes", "ip")
        values["sentinel_nodes"] = _nodes(conf.get("sentinel_nodes"), f"{where}.sentinel_nodes",
                                          "host")

        settings = cls(**values)
        if settings.cluster_nodes:
            if settings.sentinel_master or settings.sentinel_nodes:
                raise ConfigError(f"{where}.cluster_nodes", EXCLUSIVE_TOPOLOGIES)
            if settings.database != 0:
                raise ConfigError(f"{where}.database", CLUSTER_ONE_DATABASE)
        elif settings.sentinel_master and not settings.sentinel_nodes:
            raise ConfigError(f"{where}.sentinel_nodes", SENTINEL_NEEDS_NODES)
        elif settings.sentinel_nodes and not settings.sentinel_master:
            raise ConfigError(f"{where}.sentinel_master", SENTINEL_NEEDS_MASTER)
        elif not settings.sentinel_master and not settings.host:
            raise ConfigError(f"{where}.host", REQUIRED_WHEN_SYNCED)
        return settings


def _integer(value: Any, place: str, low: int, high: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(place, f"must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ConfigError(place, f"out of range: {value}")
    return value


def _nodes(raw: Any, place: str, host_key: str) -> tuple[Node, ...]:
    """[{ip|host, port}] -> ((host, port), ...); Kong's defaults are 127.0.0.1 and 6379."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(place, f"must be a list of {{{host_key}, port}}")
    out = []
    for i, node in enumerate(raw):
        if not isinstance(node, dict):
            raise ConfigError(f"{place}[{i}]", f"must be a map {{{host_key}, port}}")
        unknown = set(node) - {host_key, "port"}
        if unknown:
            raise ConfigError(f"{place}[{i}].{sorted(unknown)[0]}", "unknown field")
        host = node.get(host_key)
        if host is None:
            host = "127.0.0.1"
        if not isinstance(host, str) or not host:
            raise ConfigError(f"{place}[{i}].{host_key}", "must be a host name or address")
        port = _integer(node.get("port"), f"{place}[{i}].port", 0, 65535)
        out.append((host, 6379 if port is None else port))
    return tuple(out)
