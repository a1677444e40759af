"""Process-wide state: one compiled Enforcer per distinct config, one rate-limit storage.

Kong's schema cannot express every check ACE makes (an unknown API in a package, ambiguous
templates...), so Kong may hand StartInstance a config ACE rejects. Like Envoy, a rejected
config never replaces the last good one of the same plugin (``__plugin_id``): the instance
serves the last good compiled config, the rejection is logged once and kept for GetStatus, and
the failure is cached by config hash so it is compiled once, not on every request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kong_ace.core.catalog import KONG_KEYS, is_kong_meta
from kong_ace.core.enforcer import Enforcer
from kong_ace.errors import ConfigError
from kong_ace.gateway.last_good import LastGoodFiles
from kong_ace.gateway.schema import config_record, empty_maps_to_lists
from kong_ace.limits.limiter import MemoryStorage

log = logging.getLogger("kong_ace.gateway.server")

# Every instance in this process counts against the same counters (SPEC §5): a limit of 5 per
# minute admits 5, whatever the number of nginx workers or config reloads.
STORAGE = MemoryStorage()

IDLE_MAX = 2  # compiled configs no instance uses, kept for a quick return (rollback)
FAILURES_MAX = 64  # rejected config hashes remembered (each compiled once)
PLUGINS_MAX = 256  # plugin ids whose last good config is pinned

REJECTED_SERVING = ("%s: plugin %s: rejected config %s: %s; still serving its last good config %s")
REJECTED_NONE = "%s: plugin %s: rejected config %s: %s; no last good config: Kong answers 500"

_CONFIG_SCHEMA = config_record()


def strip_meta(value: Any) -> Any:
    """``value`` without the `$`-prefixed keys Kong adds inside records (``$refs``), at any depth.

    ``$refs`` names the vault references whose resolved values sit in the fields beside it: the
    resolved values are what ACE uses, so the references must not change the config hash.
    """
    if isinstance(value, dict):
        return {k: strip_meta(v) for k, v in value.items() if not is_kong_meta(k)}
    if isinstance(value, list):
        return [strip_meta(v) for v in value]
    return value


def canonical_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without Kong's per-instance keys, with Lua's `{}` read back as `[]`."""
    if not isinstance(config, Mapping):
        raise ConfigError("config", "must be a map")
    clean = {k: strip_meta(v) for k, v in config.items()
             if k not in KONG_KEYS and not k.startswith("__") and not is_kong_meta(k)}
    return empty_maps_to_lists(clean, _CONFIG_SCHEMA)  # type: ignore[no-any-return]


def config_key(config: Mapping[str, Any]) -> str:
    """A hash that is equal for configs that compile to the same Enforcer."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def plugin_id(config: Mapping[str, Any]) -> str | None:
    """Kong's id of the plugin entity the config belongs to (plugins_iterator.lua)."""
    pid = config.get("__plugin_id") if isinstance(config, Mapping) else None
    return pid if isinstance(pid, str) and pid else None


@dataclass(eq=False)
class Compiled:
    """An Enforcer and what the adapter must read from Kong to feed it."""

    key: str
    enforcer: Enforcer
    needs_consumer: bool
    service_scoped: bool
    anonymous: str | None
    users: int = field(default=0)
    compile_seconds: float = 0.0  # how long compiling took (metrics, status)
    deprecated_apis: frozenset[str] = frozenset()  # counted in kong_ace_deprecated_calls


@dataclass
class Rejection:
    """The latest config of a plugin that ACE rejected while Kong accepted it."""

    plugin_id: str
    config_hash: str
    error: str
    time: float
    serving: str | None  # the hash of the last good config served instead, or None (500)

    def as_status(self) -> dict[str, Any]:
        """The GetStatus shape."""
        return {"PluginId": self.plugin_id, "ConfigHash": self.config_hash,
                "Error": self.error, "Time": self.time, "Serving": self.serving}


class CompiledCache:
    """Instances with the same config share one compiled Enforcer.

    Entries in use, and each plugin's last good config, stay; entries nobody uses are kept in a
    small LRU (``idle_max``) and then dropped.
    """

    def __init__(self, storage: Any = STORAGE, *, idle_max: int = IDLE_MAX,
                 failures_max: int = FAILURES_MAX, plugins_max: int = PLUGINS_MAX,
                 clock: Callable[[], float] = time.time) -> None:
        self._storage = storage
        self._idle_max = idle_max
        self._failures_max = failures_max
        self._plugins_max = plugins_max
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, Compiled] = {}
        self._idle: OrderedDict[str, None] = OrderedDict()
        self._failures: OrderedDict[str, tuple[str, str]] = OrderedDict()  # hash -> place, problem
        self._last_good: OrderedDict[str, str] = OrderedDict()  # plugin id -> hash
        self._rejections: dict[str, Rejection] = {}
        self.compiles = 0  # how many times a config was compiled (tests: failures compile once)
        self.files: LastGoodFiles | None = None  # last good configs on disk (last_good.py)

    def keep_on_disk(self, files: LastGoodFiles) -> None:
        """Save each plugin's last good config in ``files`` and fall back to those at need."""
        files.load_all()
        self.files = files

    def acquire(self, config: Mapping[str, Any]) -> Compiled:
        """The compiled form of ``config``, or its plugin's last good one if ACE rejects it.

        Raises ConfigError when the config is rejected and its plugin has no last good config.
        """
        clean = canonical_config(config)
        key = config_key(clean)
        pid = plugin_id(config)
        # One lock for compile too: concurrent StartInstance calls of one config compile once.
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                failure = self._failures.get(key)
                if failure is not None:
                    self._failures.move_to_end(key)
                    return self._stand_in(pid, key, failure, first=False)
                try:
                    entry = self._compile(key, clean)
                except ConfigError as exc:
                    failure = (exc.place, exc.problem)
                    self._failures[key] = failure
                    while len(self._failures) > self._failures_max:
                        self._failures.popitem(last=False)
                    return self._stand_in(pid, key, failure, first=True)
            self._use(entry)  # before pinning: it must not count as idle while others trim
            if pid is not None:
                self._pin(pid, key)
                self._rejections.pop(pid, None)
                if self.files is not None:
                    self.files.save(pid, key, config)
            return entry

    def release(self, entry: Compiled) -> None:
        """One instance using ``entry`` has closed."""
        with self._lock:
            entry.users -= 1
            if entry.users <= 0 and self._entries.get(entry.key) is entry:
                self._trim(entry.key)

    def rejections(self) -> list[Rejection]:
        """The current rejection of each plugin whose latest config ACE rejected."""
        with self._lock:
            return list(self._rejections.values())

    def rejection(self, pid: str | None) -> Rejection | None:
        """The current rejection of plugin ``pid``, if its latest config was rejected."""
        with self._lock:
            return self._rejections.get(pid) if pid is not None else None

    def status(self) -> dict[str, Any]:
        """What GetStatus reports about compiled configs (keys only ever added)."""
        with self._lock:
            return {"CompiledIdle": len(self._idle), "Failures": len(self._failures),
                    "Compiles": self.compiles,
                    "LastGoodDir": None if self.files is None else self.files.directory,
                    "Rejected": [r.as_status() for r in self._rejections.values()]}

    def __len__(self) -> int:
        """Compiled configs in use (by an instance, or as a plugin's last good config)."""
        return len(self._entries) - len(self._idle)

    # --- internals (called with the lock held) ------------------------------------------------

    def _compile(self, key: str, clean: dict[str, Any]) -> Compiled:
        self.compiles += 1
        start = time.perf_counter()
        enforcer = Enforcer(clean, storage=self._storage)
        cat = enforcer.catalog
        entry = Compiled(
            key=key,
            enforcer=enforcer,
            needs_consumer=bool(cat.consumers) or cat.anonymous is not None,
            service_scoped=cat.service_scoped,
            anonymous=cat.anonymous,
            compile_seconds=time.perf_counter() - start,
            deprecated_apis=frozenset(a.name for a in cat.apis.values() if a.lifecycle),
        )
        self._entries[key] = entry
        return entry

    def _use(self, entry: Compiled) -> Compiled:
        entry.users += 1
        self._idle.pop(entry.key, None)
        return entry

    def _stand_in(self, pid: str | None, key: str, failure: tuple[str, str],
                  first: bool) -> Compiled:
        place, problem = failure
        message = f"{place}: {problem}" if place else problem
        good = self._entries.get(self._last_good.get(pid, "")) if pid is not None else None
        if good is None and pid is not None:
            good = self._from_disk(pid)
        if pid is not None:
            known = self._rejections.get(pid)
            if first or known is None or known.config_hash != key:
                log.error(REJECTED_SERVING if good else REJECTED_NONE, "ace", pid, key[:12],
                          message, *((good.key[:12],) if good else ()))
                self._rejections[pid] = Rejection(pid, key, message, self._clock(),
                                                  good.key if good else None)
        elif first:
            log.error(REJECTED_NONE, "ace", "(no __plugin_id)", key[:12], message)
        if good is None:
            exc = ConfigError(place, problem)
            exc.logged = True  # type: ignore[attr-defined]
            exc.rejected = (pid, key)  # type: ignore[attr-defined]  # plugin.py: fail closed
            raise exc
        self._last_good.move_to_end(pid)  # type: ignore[arg-type]
        return self._use(good)

    def _from_disk(self, pid: str) -> Compiled | None:
        """The last good config of ``pid`` a previous server process saved, compiled."""
        config = self.files.configs.pop(pid, None) if self.files is not None else None
        if config is None:
            return None
        clean = canonical_config(config)
        key = config_key(clean)
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = self._compile(key, clean)
            except ConfigError as exc:
                log.error("%s: plugin %s: the last good config on disk no longer compiles: %s",
                          "ace", pid, exc)
                return None
        log.warning("%s: plugin %s: serving the last good config %s kept on disk by a previous "
                    "server process", "ace", pid, key[:12])
        self._pin(pid, key)
        return entry

    def _pin(self, pid: str, key: str) -> None:
        old = self._last_good.get(pid)
        self._last_good[pid] = key
        self._last_good.move_to_end(pid)
        while len(self._last_good) > self._plugins_max:
            _, dropped = self._last_good.popitem(last=False)
            self._trim(dropped)
        if old is not None and old != key:
            self._trim(old)

    def _trim(self, key: str) -> None:
        """Move ``key`` to the idle LRU if nobody uses or pins it; drop the oldest idle ones."""
        entry = self._entries.get(key)
        if entry is None or entry.users > 0 or key in self._last_good.values():
            return
        self._idle[key] = None
        self._idle.move_to_end(key)
        while len(self._idle) > self._idle_max:
            dropped, _ = self._idle.popitem(last=False)
            self._entries.pop(dropped, None)

    def entries(self) -> list[Compiled]:
        """The compiled configs held now (status and metrics)."""
        with self._lock:
            return list(self._entries.values())


CACHE = CompiledCache()
