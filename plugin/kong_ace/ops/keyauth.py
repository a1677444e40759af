"""Kong's key-auth plugin as far as `explain` needs it: which consumer a request authenticates as.

key-auth (priority 1250) runs before ACE (955); when it applies to the route it either sets the
consumer ACE then maps to an application, or answers 401 itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kong_ace.ops.deckfile import Consumer, DeckFile, Plugin, Route

NO_KEY = "No API key found in request"
BAD_KEY = "Unauthorized"
DEFAULT_KEY_NAMES = ("apikey",)


@dataclass(frozen=True)
class KeyAuthResult:
    """What key-auth did: the consumer it authenticated, or the 401 it answered."""

    plugin: Plugin
    key_names: tuple[str, ...]
    consumer: Consumer | None
    status: int | None = None
    message: str | None = None
    anonymous: str | None = None


def applicable(deck: DeckFile, route: Route) -> Plugin | None:
    """The enabled key-auth plugin that runs for a route: route, then service, then global."""
    svc = route.service.label if route.service else None
    candidates = [p for p in deck.plugins if p.name == "key-auth" and p.enabled
                  and p.consumer is None]
    for test in (lambda p: p.route == route.label,
                 lambda p: p.service is not None and p.service == svc and p.route is None,
                 lambda p: p.is_global):
        for p in candidates:
            if test(p):
                return p
    return None


def key_names(plugin: Plugin) -> tuple[str, ...]:
    """The header/query names key-auth reads."""
    names = plugin.config.get("key_names")
    return tuple(str(n) for n in names) if isinstance(names, list) and names else \
        DEFAULT_KEY_NAMES


def _first(values: Any) -> str | None:
    if isinstance(values, list):
        return next((v for v in values if v), None)
    return values or None


def authenticate(deck: DeckFile, plugin: Plugin, headers: Mapping[str, Any],
                 query: Mapping[str, Any]) -> KeyAuthResult:
    """Run key-auth's lookup against the file's consumers (maps may be Kong multi-maps)."""
    cfg: Mapping[str, Any] = plugin.config
    names = key_names(plugin)
    key = None
    if cfg.get("key_in_header") is not False:
        key = next((k for n in names if (k := _first(headers.get(n.lower())))), None)
    if key is None and cfg.get("key_in_query") is not False:
        key = next((k for n in names if (k := _first(query.get(n)))), None)
    anonymous = cfg.get("anonymous") or None
    if key is None:
        if anonymous:
            return KeyAuthResult(plugin, names, None, anonymous=anonymous)
        return KeyAuthResult(plugin, names, None, 401, NO_KEY)
    for consumer in deck.consumers:
        if key in consumer.keyauth_keys:
            return KeyAuthResult(plugin, names, consumer)
    if anonymous:
        return KeyAuthResult(plugin, names, None, anonymous=anonymous)
    return KeyAuthResult(plugin, names, None, 401, BAD_KEY)
