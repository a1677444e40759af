"""Request confusion (SPEC §8): the readings an upstream may make of a request, screened first.

Kong matches and forwards its normalised path, but the upstream reads the request again: a
WSGI/ASGI server percent-decodes ``%2F`` into a separator, Tomcat/Jetty drop ``;`` path
parameters, most servers cut the path at a raw ``#``, and method-override middleware runs the
method a header or ``_method`` names. ``screen`` refuses what cannot be made safe, rewrites what
an option says to rewrite, and names the headers and query arguments to strip; the Enforcer then
matches the path it returns (and the percent-decoded ``alternate``, which must reach the same
operation).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kong_ace.core.normalize import decode_all, normalize_path, remove_dots
from kong_ace.core.readings import body_kind, body_overrides, override_names, php_name

# 400 messages (Kong-style bodies {"message": ...}).
FRAGMENT = "fragment in request target"
ESCAPED_SLASH = "escaped slash in request path"
PATH_PARAMETERS = "path parameters (';') in request path"
AMBIGUOUS_PATH = "ambiguous request path"
HOST_MISMATCH = "request-line host and Host header differ"
METHOD_OVERRIDE = "method override not allowed"
BODY_OVERRIDE = "method override in request body"
UNINSPECTED_BODY = "request body cannot be inspected for a method override"
TOO_MANY_HEADERS = "too many request headers"

ESCAPED_SLASH_ACTIONS = ("reject", "unescape", "keep")
METHOD_OVERRIDE_ACTIONS = ("strip", "reject", "follow")
BODY_OVERRIDE_ACTIONS = ("reject", "follow")  # a body cannot be stripped
UNINSPECTED_BODY_ACTIONS = ("reject_if_ambiguous", "reject", "allow")

# Every spelling counts: Kong runs with underscores_in_headers on, and CGI-style servers (WSGI,
# Rack, PHP) read X_HTTP_Method_Override as X-HTTP-Method-Override.
OVERRIDE_HEADERS = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})
OVERRIDE_QUERY = "_method"
ACE_PREFIX = "x-ace-"
ACE_NAMES = ("X-ACE-Operation-ID", "X-ACE-Application-ID", "X-ACE-Package", "X-ACE-API")
# What Kong's auth plugins set for the consumer they authenticated (kong/constants.lua HEADERS).
CONSUMER_HEADERS = frozenset({"x-consumer-id", "x-consumer-custom-id", "x-consumer-username",
                              "x-credential-identifier", "x-anonymous-consumer"})
ANONYMOUS_HEADER = "x-anonymous-consumer"
_X = frozenset({"x-", "x_"})


def spellings(name: str) -> tuple[str, ...]:
    """Every '-'/'_' spelling of a header name (nginx matches case-insensitively, not '_')."""
    parts = name.lower().split("-")
    out = []
    for seps in itertools.product("-_", repeat=len(parts) - 1):
        out.append(parts[0] + "".join(s + p for s, p in zip(seps, parts[1:], strict=True)))
    return tuple(out)


# Cleared blindly when Kong read only the first 100 headers of a request that passes through.
BLIND_ACE = tuple(s for n in ACE_NAMES for s in spellings(n))



@dataclass(slots=True)
class Screened:
    """What to decide on, and what to strip, once the upstream's readings are accounted for."""

    refusal: str | None = None  # a 400 message
    method: str = ""
    path: str = ""  # Kong's normalised path (decoded when escaped slashes are unescaped)
    alternate: str | None = None  # the percent-decoded reading, when it differs from ``path``
    upstream_path: str | None = None  # the path to forward instead of Kong's
    concerned: bool = False  # some reading lies under an API
    ace_headers: tuple[str, ...] = ()  # client spellings of X-ACE-* (always cleared)
    consumer_headers: tuple[str, ...] = ()  # client spellings of Kong's consumer headers
    strip_headers: tuple[str, ...] = ()  # method-override headers to strip
    strip_query: tuple[str, ...] = ()  # query arguments to strip
    anonymous: bool = False  # X-Anonymous-Consumer: true (another plugin's anonymous consumer)
    body_unseen: bool = False  # a POST body an upstream reads `_method` from was not inspected
    needs_body: bool = False  # ... because it was never read (classic mode reads it and retries)


@dataclass(frozen=True, slots=True)
class Policy:
    """The compiled options and API prefixes that screening needs."""

    escaped_slashes: str = "reject"
    method_override: str = "strip"
    body_override: str = "reject"
    uninspected_body: str = "reject_if_ambiguous"
    base_paths: tuple[str, ...] = ()  # lower-cased, normalised, no trailing slash; "" = root

    def under_api(self, path: str) -> bool:
        """Whether ``path`` lies under some API's base path (compared case-insensitively)."""
        low = path.lower()
        for base in self.base_paths:
            if not base or low == base or low.startswith(base + "/"):
                return True
        return False


def screen(policy: Policy, req: Any, headers: Mapping[str, Any]) -> Screened:
    """Refuse, rewrite or strip what an upstream would read differently (``headers``: lower)."""
    s = Screened(None, req.method)  # positional (refusal, method): cheaper than by keyword
    target = req.target
    if type(target) is not str:  # noqa: E721 - exact type checks: this runs on every request
        target = req.path
    if type(target) is str and "#" in target:  # noqa: E721
        s.refusal = FRAGMENT  # RFC 9112: a request target has no fragment
        return s
    if (req.authority is not None and isinstance(req.authority, str)
            and isinstance(req.host, str)  # an empty Host header differs too
            and host_key(req.authority) != host_key(req.host)):
        s.refusal = HOST_MISMATCH  # Kong's router reads the Host header, nginx's $host not
        return s
    if type(req.path) is not str:  # noqa: E721
        path = ""
    elif req.normalized:
        path = req.path  # Kong's normalised path: a second pass is not idempotent (%%32%65)
    else:
        path = normalize_path(req.path)
    s.path = path
    overrides: list[str] = []
    ace: list[str] = []
    consumer: list[str] = []
    # Every name the screen cares about starts with x- or x_: one comprehension filters them.
    try:
        names = [n for n in headers if n[:2] in _X]
    except TypeError:  # a name that cannot be sliced: the careful way
        names = [n for n in headers if isinstance(n, str) and n[:2] in _X]
    for name in names:  # only str names: a bytes slice b"x-" is never in _X
        canon = name.replace("_", "-")
        if canon.startswith(ACE_PREFIX):
            ace.append(name)
        elif canon in CONSUMER_HEADERS:
            consumer.append(name)
            if canon == ANONYMOUS_HEADER and _is_true(headers[name]):
                s.anonymous = True
        elif canon in OVERRIDE_HEADERS:
            overrides.append(name)
    s.ace_headers = tuple(ace)
    s.consumer_headers = tuple(consumer)
    query = req.query
    if type(query) is not dict and not isinstance(query, Mapping):  # noqa: E721
        query = {}
    # PHP renames argument names (`.method`, `+_method`, `_method%00x` are `_method`).
    in_query = override_names(query) if query else ()
    truncated = bool(req.headers_truncated)
    # Laravel reads `_method` from a POST's form or JSON body too.
    kind = body_kind(headers.get("content-type")) if req.method == "POST" else None
    if not overrides and not in_query and not truncated and kind is None and not (
            "%" in path or ";" in path or "\\" in path):
        return s  # the usual request: one reading
    policy_under = policy.under_api
    # Lower-case escapes too: Kong upper-cases the escapes it keeps, but its one decoding pass
    # can leave a new one behind (%%32%66 is %2f), which the next hop decodes.
    slashed = "%2F" in path or "%2f" in path or "\\" in path or "%5c" in path or "%5C" in path
    semi = "%3B" in path or "%3b" in path or ";" in path
    under = (slashed or semi) and _under_any(policy, path)
    if slashed and under:
        # Kong keeps %2F (and forwards %5C, which it decodes to '\'); decoders split on them.
        if policy.escaped_slashes == "reject":
            s.refusal = ESCAPED_SLASH
            return s
        if policy.escaped_slashes == "unescape":
            path = s.path = s.upstream_path = remove_dots(_slashes(path))
            semi = "%3B" in path or "%3b" in path or ";" in path
    # Tomcat/Jetty route on the path without ';' parameters (Undertow after decoding).
    if semi and under:
        s.refusal = PATH_PARAMETERS
        return s
    if "%" in path:
        decoded = percent_decode(path)
        if decoded != path:
            # Decoding can make dot segments (%2e%2e left behind by %%32%65): the upstream
            # removes them, so the second reading does too.
            if "/." in decoded or "//" in decoded:
                decoded = remove_dots(decoded)
            s.alternate = decoded
    s.concerned = policy_under(path) or (s.alternate is not None and policy_under(s.alternate))
    if truncated:
        if s.concerned:
            s.refusal = TOO_MANY_HEADERS  # a key, a forged header or an override may be unseen
            return s
        s.ace_headers = tuple(dict.fromkeys(s.ace_headers + BLIND_ACE))
    if not s.concerned:
        return s
    body: list[str] = []
    if kind is not None:
        body = _body_overrides(policy, s, req, kind, headers)
        if s.refusal is not None:
            return s
    if overrides or in_query or body:
        _overrides(policy, s, headers, overrides, query, in_query, body)
    return s


# Every spelling of the header names the screen acts on by name (x-ace-* by prefix besides).
_NOTED = frozenset(s for n in CONSUMER_HEADERS | OVERRIDE_HEADERS for s in spellings(n))


def plain_path(req: Any, headers: Mapping[str, Any]) -> str | None:
    """The path ``screen`` decides on when it finds nothing to refuse, rewrite or strip.

    None: screen the request (it may have something to do). Recognises only the usual shape,
    without building a Screened: lower-case header names, none that the screen acts on, a
    path free of '%', ';', '\\' and '#', no override in the query, no POST body to read, the
    request-line host (if any) spelled as the Host header. tests/core/test_fast_path.py
    holds it to screen's answer.
    """
    path = req.path
    if type(path) is not str or "%" in path or ";" in path or "\\" in path or "#" in path:  # noqa: E721
        return None
    target = req.target
    if target is not None and (type(target) is not str or "#" in target):  # noqa: E721
        return None
    authority = req.authority
    if authority is not None and authority != req.host:
        # On the real Kong this is the usual case: ace-context's authority is nginx's $host
        # (lower case, no port) and the Host header keeps the client's port. The screen's own
        # comparison decides; anything odd is left to the screen.
        host = req.host
        if type(authority) is not str or type(host) is not str or not (  # noqa: E721
                _port_of(authority, host) or host_key(authority) == host_key(host)):
            return None
    if req.headers_truncated:
        return None
    if not req.normalized and (not path.startswith("/") or "//" in path or (
            "." in path and "/." in path)):  # ('.' first: memchr, where "/." crawls over '/')
        return None  # normalize_path would change it (without '%' it changes nothing else)
    # One string for the name checks: they run in C. A name holding '\n' only makes a check
    # see more than there is (then the screen looks).
    try:
        names = "\n".join(headers)
    except TypeError:  # a name that is not a str
        return None
    if names.lower() != names:  # a name with a capital: lowered (and merged) first
        return None
    if "x-ace" in names or "x_ace" in names or not _NOTED.isdisjoint(headers):
        return None
    query = req.query
    if query and (type(query) is not dict or override_names(query)):  # noqa: E721
        return None
    if req.method == "POST" and body_kind(headers.get("content-type")) is not None:
        return None
    return path


def _port_of(authority: str, host: str) -> bool:
    """Whether ``host`` is ``authority`` and a port, for a plain authority (no ':', '@', '['
    or white space): then host_key reads both alike, without the two calls."""
    n = len(authority)
    return (host[n:n + 1] == ":" and host.startswith(authority) and host[n + 1:].isdigit()
            and ":" not in authority and "@" not in authority and "[" not in authority
            and authority.strip() == authority)


def _body_overrides(policy: Policy, s: Screened, req: Any, kind: str,
                    headers: Mapping[str, Any]) -> list[str]:
    # The values a POST body gives `_method` that name another method.
    raw = req.body
    if req.body_spilled or raw is None:
        s.body_unseen = True  # decided by the Enforcer (uninspected_body_action)
        s.needs_body = raw is None and not req.body_spilled
        return []
    values = body_overrides(kind, raw, headers.get("content-type"))
    if values is None:
        s.body_unseen = True  # a body no parser here understands: treated as unseen
        return []
    others = [v for v in values if v.upper() != "POST"]
    if others and policy.body_override == "reject":
        s.refusal = BODY_OVERRIDE
    return others


def _overrides(policy: Policy, s: Screened, headers: Mapping[str, Any], names: list[str],
               query: Mapping[str, Any], args: tuple[str, ...], body: list[str]) -> None:
    action = policy.method_override
    if action == "reject" and (names or args):
        s.refusal = METHOD_OVERRIDE
        return
    if s.method == "POST" and (action == "follow" or body):
        # Frameworks honour an override on POST only (Rails, Laravel, Symfony, express, ASP.NET).
        wanted = {v.upper() for v in body}
        if action == "follow":
            wanted |= {v.upper() for n in names for v in _strings(headers[n])}
            for a in args:
                if php_name(a).endswith("["):
                    s.refusal = METHOD_OVERRIDE  # `_method[]=...`: an array, no method
                    return
                wanted |= {v.upper() for v in _strings(query[a])}
        if len(wanted) > 1:
            s.refusal = METHOD_OVERRIDE  # two overrides that disagree: no single reading
            return
        if wanted:
            s.method = wanted.pop()
        if action == "follow":
            return
    s.strip_headers = tuple(names)
    s.strip_query = args


def _under_any(policy: Policy, path: str) -> bool:
    """Whether some server's reading of ``path`` (';' parameters cut, before or after
    decoding; escaped slashes split; dot segments and empty segments gone) is under an API."""
    under = policy.under_api
    if under(path):
        return True
    semis = {path, path.replace("%3B", ";").replace("%3b", ";")}
    readings = {_slashes(path)}
    for p in semis:
        readings.add(strip_parameters(p))
        readings.add(_slashes(strip_parameters(p)))
        readings.add(strip_parameters(_slashes(p)))
    return any(under(remove_dots(r)) for r in readings)


def _slashes(path: str) -> str:
    for escaped in ("%2F", "%2f", "%5C", "%5c", "\\"):
        if escaped in path:
            path = path.replace(escaped, "/")
    return path


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str)]
    return []


def _is_true(value: Any) -> bool:
    return any(v.strip().lower() == "true" for v in _strings(value))


def host_key(host: str) -> str:
    """A host as routers compare it: lower case, no port, no trailing dot."""
    host = host.strip().lower()
    if "@" in host:
        host = host.rsplit("@", 1)[1]
    if host.startswith("["):
        host = host[: host.find("]") + 1]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host[:-1] if host.endswith(".") else host


def strip_parameters(path: str) -> str:
    """The path as Tomcat/Jetty route it: every ``;...`` cut from each segment."""
    return "/".join(seg.partition(";")[0] for seg in path.split("/"))


def percent_decode(path: str) -> str:
    """A normalised path decoded once, as a WSGI/ASGI server does; ``%2F`` stays (see screen)."""
    return decode_all(path, keep_slash=True)
