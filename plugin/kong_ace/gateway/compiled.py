"""Process-wide state: one compiled Enforcer per distinct config, one rate-limit storage."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kong_ace.core.catalog import KONG_KEYS
from kong_ace.core.enforcer import Enforcer
from kong_ace.errors import ConfigError
from kong_ace.gateway.schema import config_record, empty_maps_to_lists
from kong_ace.limits.limiter import MemoryStorage

# Every instance in this process counts against the same counters (SPEC §5): a limit of 5 per
# minute admits 5, whatever the number of nginx workers or config reloads.
STORAGE = MemoryStorage()

_CONFIG_SCHEMA = config_record()


def canonical_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without Kong's per-instance keys, with Lua's `{}` read back as `[]`."""
    if not isinstance(config, Mapping):
        raise ConfigError("config", "must be a map")
    clean = {k: v for k, v in config.items() if k not in KONG_KEYS and not k.startswith("__")}
    return empty_maps_to_lists(clean, _CONFIG_SCHEMA)


def config_key(config: Mapping[str, Any]) -> str:
    """A hash that is equal for configs that compile to the same Enforcer."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(eq=False)
class Compiled:
    """An Enforcer and what the adapter must read from Kong to feed it."""

    key: str
    enforcer: Enforcer
    needs_consumer: bool
    service_scoped: bool
    host_scoped: bool
    key_in_query: bool
    anonymous: str | None
    users: int = field(default=0)
    compile_seconds: float = 0.0  # how long compiling took (metrics, status)


class CompiledCache:
    """Instances with the same config share one compiled Enforcer; released when unused."""

    def __init__(self, storage: Any = STORAGE) -> None:
        self._storage = storage
        self._lock = threading.Lock()
        self._entries: dict[str, Compiled] = {}

    def acquire(self, config: Mapping[str, Any]) -> Compiled:
        """The compiled form of ``config``; compiles (and may raise ConfigError) on a miss."""
        clean = canonical_config(config)
        key = config_key(clean)
        # One lock for compile too: concurrent StartInstance calls of one config compile once.
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                start = time.perf_counter()
                enforcer = Enforcer(clean, storage=self._storage)
                cat = enforcer.catalog
                entry = Compiled(
                    key=key,
                    enforcer=enforcer,
                    needs_consumer=bool(cat.consumers) or cat.anonymous is not None,
                    service_scoped=cat.service_scoped,
                    host_scoped=cat.host_scoped,
                    key_in_query=cat.key_in_query,
                    anonymous=cat.anonymous,
                    compile_seconds=time.perf_counter() - start,
                )
                self._entries[key] = entry
            entry.users += 1
            return entry

    def release(self, entry: Compiled) -> None:
        """One instance using ``entry`` has closed."""
        with self._lock:
            entry.users -= 1
            if entry.users <= 0 and self._entries.get(entry.key) is entry:
                del self._entries[entry.key]

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[Compiled]:
        """The compiled configs held now (status and metrics)."""
        with self._lock:
            return list(self._entries.values())


CACHE = CompiledCache()
