"""Kong's HTTP router, modelled on its `traditional_compatible` flavour (Kong 3.x default).

Each route path becomes its own matcher, as Kong splits routes by path; matchers are tried in
Kong's priority order (kong/router/transform.lua get_priority): the number of fields set
(methods, hosts, headers, snis, paths), then hosts without wildcards, then the header count,
then regex paths (ordered by regex_priority) before prefixes, then the longer prefix. Prefix
paths are plain string prefixes of the normalised request path; regex paths are anchored at the
start. Kong breaks remaining ties by route id; we use file order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kong_ace.core.normalize import normalize_path
from kong_ace.ops.deckfile import Route

BAD_REGEX = "{place}: regex path '{path}' is not understood ({reason}); it is not modelled"


@dataclass(frozen=True)
class PathMatcher:
    """One route path (or a route without paths) with Kong's priority."""

    route: Route
    path: str | None
    regex: re.Pattern[str] | None
    priority: tuple[int, ...]

    def matches(self, method: str, path: str, host: str | None,
                headers: Mapping[str, Any]) -> bool:
        """Whether Kong's expression for this matcher holds."""
        r = self.route
        if r.methods and method not in r.methods:
            return False
        if r.hosts and not any(host_matches(h, host) for h in r.hosts):
            return False
        for name, values in r.headers.items():
            got = headers.get(name)
            got_all = got if isinstance(got, list) else [] if got is None else [got]
            if not any(_header_value_matches(v, g) for v in values for g in got_all):
                return False
        return self.path_matches(path)

    def path_matches(self, path: str) -> bool:
        """The path condition alone: an anchored regex or a plain string prefix."""
        if self.path is None:
            return True
        if self.regex is not None:
            return self.regex.match(path) is not None
        return path.startswith(self.path)


def host_matches(pattern: str, host: str | None) -> bool:
    """Kong's host rule: exact, leading `*` (suffix) or trailing `*` (prefix); a port must match."""
    if host is None:
        return False
    host = host.lower()
    want, port = _split_port(pattern)
    got, got_port = _split_port(host)
    if port is not None and port != got_port:
        return False
    if want.startswith("*"):
        return got.endswith(want[1:])
    if want.endswith("*"):
        return got.startswith(want[:-1])
    return got == want


def _split_port(host: str) -> tuple[str, int | None]:
    if host.startswith("["):  # IPv6 literal
        end = host.find("]") + 1
        port = host[end + 1:] if host[end:end + 1] == ":" else ""
        return (host[:end], int(port)) if port.isdigit() else (host, None)
    name, sep, port = host.partition(":")
    return (name, int(port)) if sep and port.isdigit() else (host, None)


def _header_value_matches(want: str, got: str) -> bool:
    if want.startswith("~*"):
        return re.search(want[2:], got.lower()) is not None
    return got.lower() == want.lower()


_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")


def _kong_regex(path: str) -> re.Pattern[str]:
    # As Kong: drop '~', anchor at the start, and turn (?<name> into Python's (?P<name>.
    return re.compile("^" + _NAMED_GROUP.sub("(?P<", path[1:]))


def _priority(route: Route, path: str | None) -> tuple[int, ...]:
    weight = sum(1 for f in (route.methods, route.hosts, route.headers, route.snis, path) if f)
    plain_hosts = bool(route.hosts) and not any("*" in h for h in route.hosts)
    regex = path is not None and path.startswith("~")
    return (
        weight,
        int(plain_hosts),
        min(len(route.headers), 255),
        int(regex),
        route.regex_priority if regex else 0,
        0 if regex or path is None else len(path),
    )


class Router:
    """The routes of one declarative file, in the order Kong tries them."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.warnings: list[str] = []
        matchers: list[tuple[tuple[int, ...], int, PathMatcher]] = []
        for order, route in enumerate(routes):
            for path in route.paths or (None,):
                regex = None
                if path is not None and path.startswith("~"):
                    try:
                        regex = _kong_regex(path)
                    except re.error as exc:
                        self.warnings.append(BAD_REGEX.format(place=route.place, path=path,
                                                              reason=exc))
                        continue
                prio = _priority(route, path)
                matchers.append((prio, order, PathMatcher(route, path, regex, prio)))
        matchers.sort(key=lambda m: (tuple(-p for p in m[0]), m[1]))
        self.matchers = [m[2] for m in matchers]

    def find(self, method: str, path: str, host: str | None = None,
             headers: Mapping[str, Any] | None = None) -> PathMatcher | None:
        """The matcher Kong would pick for a request, or None (Kong answers 404)."""
        path = normalize_path(path)
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        for m in self.matchers:
            if m.matches(method, path, host, hdrs):
                return m
        return None

    def ties(self, winner: PathMatcher, method: str, path: str, host: str | None = None,
             headers: Mapping[str, Any] | None = None) -> list[Route]:
        """Other routes matching the same request at the same priority (Kong's pick is by id)."""
        path = normalize_path(path)
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        return [m.route for m in self.matchers
                if m.priority == winner.priority and m.route is not winner.route
                and m.matches(method, path, host, hdrs)]
