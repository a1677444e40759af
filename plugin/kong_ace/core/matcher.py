"""Operation matcher: path templates compiled into a segment trie, as werkzeug compiles rules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kong_ace.core.normalize import decode_unreserved

_PARAM = re.compile(r"\{([^{}/]*)\}")


@dataclass(frozen=True, slots=True)
class Operation:
    """A compiled API operation."""

    id: str
    api: str
    method: str
    path: str  # full template, base path included
    template: str  # the spec's own path template
    uid: int = 0  # index in the catalog, for set membership on the hot path

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class Scope:
    """Where an API applies: a Kong service (name or id) and/or request hosts."""

    service: str | None = None
    hosts: frozenset[str] = frozenset()
    # Compiled from ``hosts``: plain names, and the wildcards' fixed parts (see host_matches).
    plain: frozenset[str] = field(default=frozenset(), init=False, compare=False)
    suffixes: tuple[str, ...] = field(default=(), init=False, compare=False)
    prefixes: tuple[str, ...] = field(default=(), init=False, compare=False)

    def __post_init__(self) -> None:
        plain, suffixes, prefixes = _host_patterns(self.hosts)
        object.__setattr__(self, "plain", plain)
        object.__setattr__(self, "suffixes", suffixes)
        object.__setattr__(self, "prefixes", prefixes)

    @property
    def rank(self) -> int:
        # The narrower scope is tried first.
        return (0 if self.service else 2) + (0 if self.hosts else 1)

    def admits(self, service: tuple[str, ...], host: str | None) -> bool:
        if self.service is not None and self.service not in service:
            return False
        if not self.hosts:
            return True
        if host is None:
            return False
        if host in self.plain:
            return True
        return any(len(host) > len(w) and host.endswith(w) for w in self.suffixes) or any(
            len(host) > len(w) and host.startswith(w) for w in self.prefixes)

    def overlaps(self, other: Scope) -> bool:
        if self.service and other.service and self.service != other.service:
            return False
        if self.hosts and other.hosts and not (self.hosts & other.hosts):
            return False
        return self.rank == other.rank


def _host_patterns(hosts: frozenset[str]) -> tuple[frozenset[str], tuple[str, ...],
                                                   tuple[str, ...]]:
    # Kong's traditional router (kong/router/traditional.lua marshall_route, 3.9.1) turns a
    # host holding '*' into the regex host:gsub("%.", "\\."):gsub("%*", ".+") .. "$", matched
    # anchored ("ajo") against the Host header: a leading '*' stands for one or more of any
    # character (so `*.example.com` takes `a.b.example.com`), a trailing one likewise
    # (`example.*`); kong/db/schema/typedefs.lua `hosts` allows one '*', leftmost or rightmost.
    # The expressions flavours read them alike (kong/router/transform.lua get_expression: a
    # leading '*' is a postfix match `http.host =^ ".example.com"`, a trailing one a prefix
    # match `^=`), so a suffix/prefix test on the lower-cased host covers every flavour.
    # A port in the pattern is dropped here (hosts are compared without their port), which
    # only ever widens the scope.
    plain, suffixes, prefixes = set(), [], []
    for host in hosts:
        host = _no_port(host)
        if host.startswith("*"):
            suffixes.append(host[1:])
        elif host.endswith("*"):
            prefixes.append(host[:-1])
        else:
            plain.add(host)
    return frozenset(plain), tuple(suffixes), tuple(prefixes)


def _no_port(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else host


def host_matches(hosts: frozenset[str], host: str) -> bool:
    """Whether ``host`` (lower case, no port) matches one of ``hosts`` as Kong's router would."""
    return Scope(hosts=hosts).admits((), host)


@dataclass(frozen=True, slots=True)
class _Pattern:
    """A segment with parameters inside literal text, such as ``{name}.json``."""

    literals: tuple[str, ...]  # the text around the parameters: len == params + 1
    shape: str
    params: int
    prefix: str
    suffix: str
    literal: int

    @property
    def rank(self) -> tuple[int, int, int, str]:
        # Fewer parameters first, then the longer literal prefix, then more literal text.
        return (self.params, -len(self.prefix), -self.literal, self.shape)

    def fullmatch(self, seg: str) -> bool:
        """Whether ``seg`` fills every parameter with non-empty text; linear in ``len(seg)``.

        Left to right, each inner literal goes at its earliest place after a non-empty gap:
        the earliest end leaves the most room for what follows, so when this greedy scan
        fails no other split succeeds. No regex: nested lazy groups backtrack polynomially.
        """
        lits = self.literals
        first, last = lits[0], lits[-1]
        end = len(seg) - len(last)
        if end < len(first) + 1 or not seg.startswith(first) or not seg.endswith(last):
            return False
        pos = len(first)
        for lit in lits[1:-1]:
            found = seg.find(lit, pos + 1, end - 1)
            if found < 0:
                return False
            pos = found + len(lit)
        return end > pos

    def may_overlap(self, other: _Pattern) -> bool:
        p, q = self.prefix, other.prefix
        s, t = self.suffix, other.suffix
        return (p.startswith(q) or q.startswith(p)) and (s.endswith(t) or t.endswith(s))


PARAM_SEGMENT = "{}"


def parse_template(template: str) -> tuple[str | _Pattern, ...]:
    """Split a path template into literal segments, ``{}`` and patterns; raise if malformed."""
    if not template.startswith("/"):
        raise ValueError("a path template must start with '/'")
    body = template[1:]
    if body.endswith("/"):
        body = body[:-1]
    if not body:
        return ()
    return tuple(_parse_segment(seg) for seg in body.split("/"))


def _parse_segment(seg: str) -> str | _Pattern:
    if not seg:
        raise ValueError("empty segment ('//')")
    if "{" not in seg and "}" not in seg:
        if seg in (".", ".."):
            raise ValueError(f"dot segment {seg!r}")
        return decode_unreserved(seg)
    parts: list[str] = []
    names: list[str] = []
    pos = 0
    for m in _PARAM.finditer(seg):
        parts.append(seg[pos : m.start()])
        if not m.group(1):
            raise ValueError("empty parameter name '{}'")
        names.append(m.group(1))
        pos = m.end()
    parts.append(seg[pos:])
    if any("{" in p or "}" in p for p in parts):
        raise ValueError(f"unbalanced braces in {seg!r}")
    if any(not p for p in parts[1:-1]):
        raise ValueError(f"adjacent parameters in {seg!r} cannot be told apart")
    literals = [decode_unreserved(p) for p in parts]
    if len(names) == 1 and not literals[0] and not literals[1]:
        return PARAM_SEGMENT
    return _Pattern(
        literals=tuple(literals),
        shape="{}".join(literals),
        params=len(names),
        prefix=literals[0],
        suffix=literals[-1],
        literal=sum(map(len, literals)),
    )


class _Node:
    __slots__ = ("static", "patterns", "param", "endpoints")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.patterns: list[tuple[_Pattern, _Node]] = []
        self.param: _Node | None = None
        self.endpoints: dict[str, list[tuple[Scope, Operation]]] | None = None

    def child(self, seg: str | _Pattern) -> _Node:
        if seg is PARAM_SEGMENT:
            if self.param is None:
                self.param = _Node()
            return self.param
        if isinstance(seg, str):
            return self.static.setdefault(seg, _Node())
        for pat, node in self.patterns:
            if pat.shape == seg.shape:
                return node
        node = _Node()
        for pat, _ in self.patterns:
            if pat.rank[:3] == seg.rank[:3] and pat.may_overlap(seg):
                raise ValueError(
                    f"segment {seg.shape!r} is as specific as {pat.shape!r} and may match "
                    "the same text: the templates are ambiguous"
                )
        self.patterns.append((seg, node))
        self.patterns.sort(key=lambda item: item[0].rank)
        return node


@dataclass(slots=True)  # built per request: frozen would cost more than the lookup
class Match:
    """The matched operation, or the methods the path allows when only the path matched."""

    operation: Operation | None
    allowed: frozenset[str] = frozenset()


NO_MATCH = Match(None)


class Matcher:
    """Finds the operation for a method and a normalised path; cost grows with path depth only."""

    def __init__(self) -> None:
        self._root = _Node()

    def add(self, op: Operation, scope: Scope = Scope(), path: str | None = None) -> None:
        """Index one operation (under ``path`` if given, else its own); raise ValueError when
        it duplicates or ties with another."""
        node = self._root
        for seg in parse_template(op.path if path is None else path):
            node = node.child(seg)
        if node.endpoints is None:
            node.endpoints = {}
        same = node.endpoints.setdefault(op.method, [])
        for other_scope, other in same:
            if other_scope.overlaps(scope):
                raise ValueError(
                    f"'{op.method} {op.path}' is already operation '{other.id}' of API "
                    f"'{other.api}'"
                )
        same.append((scope, op))
        same.sort(key=lambda item: item[0].rank)

    def methods(self, path: str, service: tuple[str, ...] = (),
                host: str | None = None) -> frozenset[str]:
        """Every method some operation defines at ``path`` (a normalised path)."""
        return self.match("", path, service, host).allowed

    def match(
        self, method: str, path: str, service: tuple[str, ...] = (), host: str | None = None
    ) -> Match:
        """Match a normalised path (see normalize_path)."""
        segs = _segments(path)
        if segs is None:
            return NO_MATCH
        op = self._first_leaf(segs, method, service, host)
        if op is not None:
            return Match(op)
        allowed: set[str] = set()
        op = _walk(self._root, segs, 0, method, service, host, allowed)
        if op is not None:
            return Match(op)
        return Match(None, frozenset(allowed)) if allowed else NO_MATCH

    def _first_leaf(self, segs: list[str], method: str, service: tuple[str, ...],
                    host: str | None) -> Operation | None:
        # The first leaf the search reaches: static child first, then the first matching
        # pattern, then the parameter. When it holds the operation the full search returns
        # that same one, so only a miss pays for backtracking.
        node: _Node | None = self._root
        for seg in segs:
            child = node.static.get(seg)  # type: ignore[union-attr]
            if child is None and seg:
                for pat, pnode in node.patterns:  # type: ignore[union-attr]
                    if pat.fullmatch(seg):
                        child = pnode
                        break
                else:
                    child = node.param  # type: ignore[union-attr]
            node = child
            if node is None:
                return None
        endpoints = node.endpoints  # type: ignore[union-attr]
        if endpoints is None:
            return None
        # _pick without the allowed methods (only a miss needs them).
        candidates = endpoints.get(method)
        if candidates is None and method == "HEAD":
            candidates = endpoints.get("GET")  # HEAD falls back to GET only without a HEAD
        if candidates is not None:
            for scope, op in candidates:
                if scope.admits(service, host):
                    return op
        return None


def _segments(path: str) -> list[str] | None:
    """A normalised path's segments (no trailing empty one); None if it is not absolute."""
    if not path.startswith("/"):
        return None
    body = path[1:]
    if body.endswith("/"):
        body = body[:-1]
    return body.split("/") if body else []


def _walk(
    node: _Node,
    segs: list[str],
    i: int,
    method: str,
    service: tuple[str, ...],
    host: str | None,
    allowed: set[str],
) -> Operation | None:
    if i == len(segs):
        if node.endpoints is None:
            return None
        return _pick(node.endpoints, method, service, host, allowed)
    seg = segs[i]
    child = node.static.get(seg)
    if child is not None:
        op = _walk(child, segs, i + 1, method, service, host, allowed)
        if op is not None:
            return op
    if not seg:  # an empty segment never fills a parameter
        return None
    for pat, child in node.patterns:
        if pat.fullmatch(seg):
            op = _walk(child, segs, i + 1, method, service, host, allowed)
            if op is not None:
                return op
    if node.param is not None:
        return _walk(node.param, segs, i + 1, method, service, host, allowed)
    return None


def _pick(
    endpoints: dict[str, list[tuple[Scope, Operation]]],
    method: str,
    service: tuple[str, ...],
    host: str | None,
    allowed: set[str],
) -> Operation | None:
    candidates = endpoints.get(method)
    if candidates is None and method == "HEAD":
        candidates = endpoints.get("GET")  # HEAD falls back to GET only when the path has no HEAD
    if candidates is not None:
        for scope, op in candidates:
            if scope.admits(service, host):
                return op
    for other, ops in endpoints.items():
        if any(scope.admits(service, host) for scope, _ in ops):
            allowed.add(other)
    return None
