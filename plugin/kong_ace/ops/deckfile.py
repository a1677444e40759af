"""Read a decK declarative file (kong.yml) the way decK does, into services, routes and plugins."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FORMAT_VERSIONS = ("1.1", "2.1", "3.0")
ROUTE_MATCH_FIELDS = ("methods", "hosts", "headers", "paths", "snis")
# decK renders the file as a template; only env "DECK_..." variables may be read.
ENV_TEMPLATE = re.compile(r"\$\{\{\s*env\s+\"([^\"]*)\"\s*\}\}")

CANNOT_READ = "cannot read {path}: {reason}"
NOT_YAML = "{path}: not valid YAML or JSON: {reason}"
NOT_A_MAP = "the file must hold a map (services, routes, plugins, consumers, ...)"
MUST_BE_LIST = "must be a list"
MUST_BE_MAP = "must be a map"
MUST_BE_INT = "must be an integer"
BAD_FORMAT_VERSION = "'{value}' is not a format version decK knows ({known})"
NO_FORMAT_VERSION = "_format_version is missing: Kong's DB-less loader requires it (\"3.0\")"
ENV_NOT_DECK = "env \"{name}\": decK only reads variables whose name starts with DECK_"
ENV_UNSET = "environment variable '{name}' present in state file but not set"
UNKNOWN_SERVICE = "service '{ref}' is not defined in this file"
ROUTE_NEEDS_MATCH = "must set at least one of methods, hosts, headers, paths or snis"
BAD_PATH = "path '{path}' must start with '/' or '~' (a regex)"
EXPRESSION_ROUTE = ("{place}: expressions-router routes are not modelled; operations it carries "
                    "show as unmatched")
DUPLICATE_NAME = "duplicate {kind} name '{name}' (first at {first})"


class DeckFileError(ValueError):
    """A declarative file decK or Kong would reject; the message names the place."""

    def __init__(self, place: str, problem: str) -> None:
        self.place = place
        self.problem = problem
        super().__init__(f"{place}: {problem}" if place else problem)


@dataclass(frozen=True)
class Service:
    """A Kong Gateway Service."""

    name: str | None
    id: str | None
    place: str

    @property
    def label(self) -> str:
        """How output names it."""
        return self.name or self.id or self.place

    def as_kong(self) -> dict[str, str]:
        """The shape kong.router.get_service() returns, as far as the file tells."""
        return {k: v for k, v in (("id", self.id), ("name", self.name)) if v}


@dataclass(frozen=True)
class Route:
    """A Kong route and the fields Kong's router matches on."""

    name: str | None
    id: str | None
    place: str
    service: Service | None
    methods: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    snis: tuple[str, ...] = ()
    strip_path: bool = True
    regex_priority: int = 0

    @property
    def label(self) -> str:
        """How output names it."""
        return self.name or self.id or self.place


@dataclass(frozen=True)
class Plugin:
    """A plugin entry and its scope."""

    name: str
    config: Mapping[str, Any]
    enabled: bool
    place: str
    service: str | None = None
    route: str | None = None
    consumer: str | None = None

    @property
    def is_global(self) -> bool:
        """Applies to every request."""
        return self.service is None and self.route is None and self.consumer is None


@dataclass(frozen=True)
class Consumer:
    """A Kong consumer and its key-auth keys."""

    username: str | None
    id: str | None
    custom_id: str | None
    keyauth_keys: tuple[str, ...]
    place: str


@dataclass
class DeckFile:
    """Everything in one declarative file that routing and ACE depend on."""

    path: Path
    format_version: str | None
    services: list[Service] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    plugins: list[Plugin] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_deck_file(path: str | Path) -> DeckFile:
    """Parse and resolve a declarative file; raise DeckFileError naming the place."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise DeckFileError("", CANNOT_READ.format(path=path, reason=reason)) from None
    try:
        data = yaml.safe_load(_render_env(text))
    except yaml.YAMLError as exc:
        raise DeckFileError("", NOT_YAML.format(path=path, reason=exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise DeckFileError("", NOT_A_MAP)
    return _Reader(path, data).read()


def _render_env(text: str) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if not name.startswith("DECK_"):
            raise DeckFileError("", ENV_NOT_DECK.format(name=name))
        if name not in os.environ:
            raise DeckFileError("", ENV_UNSET.format(name=name))
        return os.environ[name]

    return ENV_TEMPLATE.sub(value, text)


class _Reader:
    def __init__(self, path: Path, data: Mapping[str, Any]) -> None:
        self.data = data
        fv = data.get("_format_version")
        self.deck = DeckFile(path, None if fv is None else str(fv))
        self.names: dict[tuple[str, str], str] = {}

    def read(self) -> DeckFile:
        """Resolve services, routes, consumers and plugins, nested or top-level."""
        deck = self.deck
        if deck.format_version is None:
            deck.warnings.append(NO_FORMAT_VERSION)
        elif deck.format_version not in FORMAT_VERSIONS:
            raise DeckFileError("_format_version", BAD_FORMAT_VERSION.format(
                value=deck.format_version, known=", ".join(FORMAT_VERSIONS)))
        nested_routes: list[tuple[Mapping[str, Any], str, Service]] = []
        for i, raw in enumerate(_maps(self.data, "services", "")):
            place = f"services[{i}]"
            svc = Service(_str(raw, "name"), _str(raw, "id"), place)
            self._unique("service", svc.name, place)
            deck.services.append(svc)
            for j, r in enumerate(_maps(raw, "routes", place)):
                nested_routes.append((r, f"{place}.routes[{j}]", svc))
            self._plugins(raw, place, service=svc.label)
        for raw, place, svc in nested_routes:
            self._route(raw, place, svc)
        for i, raw in enumerate(_maps(self.data, "routes", "")):
            place = f"routes[{i}]"
            self._route(raw, place, self._service_ref(raw.get("service"), f"{place}.service"))
        for i, raw in enumerate(_maps(self.data, "consumers", "")):
            place = f"consumers[{i}]"
            keys = tuple(str(c["key"]) for c in _maps(raw, "keyauth_credentials", place)
                         if c.get("key") is not None)
            consumer = Consumer(_str(raw, "username"), _str(raw, "id"), _str(raw, "custom_id"),
                                keys, place)
            deck.consumers.append(consumer)
            self._plugins(raw, place, consumer=consumer.username or consumer.id or place)
        self._plugins(self.data, "")
        return deck

    def _unique(self, kind: str, name: str | None, place: str) -> None:
        if name is None:
            return
        first = self.names.setdefault((kind, name), place)
        if first != place:
            raise DeckFileError(f"{place}.name", DUPLICATE_NAME.format(kind=kind, name=name,
                                                                       first=first))

    def _service_ref(self, ref: Any, place: str) -> Service | None:
        if ref is None:
            return None
        key = ref if isinstance(ref, str) else (
            (ref.get("name") or ref.get("id")) if isinstance(ref, Mapping) else None)
        for svc in self.deck.services:
            if key is not None and key in (svc.name, svc.id):
                return svc
        raise DeckFileError(place, UNKNOWN_SERVICE.format(ref=key))

    def _route(self, raw: Mapping[str, Any], place: str, service: Service | None) -> None:
        if raw.get("expression"):
            self.deck.warnings.append(EXPRESSION_ROUTE.format(place=place))
            return
        if not any(raw.get(f) for f in ROUTE_MATCH_FIELDS):
            raise DeckFileError(place, ROUTE_NEEDS_MATCH)
        paths = tuple(str(p) for p in _list(raw, "paths", place))
        for k, p in enumerate(paths):
            if not p.startswith(("/", "~")):
                raise DeckFileError(f"{place}.paths[{k}]", BAD_PATH.format(path=p))
        headers_raw = raw.get("headers") or {}
        if not isinstance(headers_raw, Mapping):
            raise DeckFileError(f"{place}.headers", MUST_BE_MAP)
        headers = {str(k).lower(): tuple(str(v) for v in (vs if isinstance(vs, list) else [vs]))
                   for k, vs in headers_raw.items()}
        route = Route(
            name=_str(raw, "name"), id=_str(raw, "id"), place=place, service=service,
            methods=tuple(str(m) for m in _list(raw, "methods", place)),
            hosts=tuple(str(h).lower() for h in _list(raw, "hosts", place)),
            paths=paths, headers=headers,
            snis=tuple(str(s) for s in _list(raw, "snis", place)),
            strip_path=raw.get("strip_path") is not False,
            regex_priority=_int(raw, "regex_priority", place),
        )
        self._unique("route", route.name, place)
        self.deck.routes.append(route)
        self._plugins(raw, place, route=route.label,
                      service=None if service is None else service.label)

    def _plugins(self, raw: Mapping[str, Any], place: str, *, service: str | None = None,
                 route: str | None = None, consumer: str | None = None) -> None:
        nested = bool(place)
        for i, p in enumerate(_maps(raw, "plugins", place)):
            where = f"{place}.plugins[{i}]" if place else f"plugins[{i}]"
            name = _str(p, "name")
            if name is None:
                raise DeckFileError(f"{where}.name", "is required")
            config = p.get("config") or {}
            if not isinstance(config, Mapping):
                raise DeckFileError(f"{where}.config", MUST_BE_MAP)
            # A plugin nested under a route is scoped to that route only, not its service.
            scope = {"service": None if route else service, "route": route, "consumer": consumer}
            if not nested:
                scope = {k: _ref(p.get(k)) for k in scope}
            self.deck.plugins.append(Plugin(name, config, p.get("enabled") is not False, where,
                                            **scope))


def _ref(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return value.get("name") or value.get("username") or value.get("id")
    return str(value)


def _int(raw: Mapping[str, Any], key: str, place: str) -> int:
    value = raw.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeckFileError(f"{place}.{key}", MUST_BE_INT)
    return value


def _str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return None if value is None else str(value)


def _list(raw: Mapping[str, Any], key: str, place: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DeckFileError(f"{place}.{key}" if place else key, MUST_BE_LIST)
    return value


def _maps(raw: Mapping[str, Any], key: str, place: str) -> list[Mapping[str, Any]]:
    items = _list(raw, key, place)
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            base = f"{place}.{key}" if place else key
            raise DeckFileError(f"{base}[{i}]", MUST_BE_MAP)
    return items
