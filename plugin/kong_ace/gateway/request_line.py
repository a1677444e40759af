"""Request-line and query-string parsing as nginx and Kong's PDK do it."""

from __future__ import annotations

import re

_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
# kong/tools/uri.lua ESCAPE_PATTERN: what Kong escapes when it forwards a path.
_UNSAFE = re.compile(rb"[^!#$&'()*+,/:;=?@\[\]A-Za-z0-9\-_.~%]")
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?]*")


def parse_request_line(line: object) -> tuple[str, str] | None:
    """(method, request_uri) from nginx's ``$request``, or None when it is not parseable.

    ``$request_uri`` is the part of the request line between the method and the protocol;
    for an absolute-form target nginx drops the scheme and authority, and so do we.
    """
    parsed = parse_request(line)
    return None if parsed is None else parsed[:2]


def parse_request(line: object) -> tuple[str, str, str | None] | None:
    """(method, request_uri, authority) from ``$request``; authority: an absolute-form's host.

    nginx's ``$host`` prefers that host over the Host header, Kong's router does not (SPEC §8).
    """
    if not isinstance(line, str):
        return None
    method, sep, rest = line.partition(" ")
    if not sep or not method:
        return None
    target, sep, proto = rest.rstrip(" ").rpartition(" ")
    if not sep or not proto.startswith("HTTP/"):
        return None
    target = target.strip(" ")
    if not target:
        return None
    authority = None
    if not target.startswith("/"):
        m = _ABSOLUTE.match(target)
        if m is None:
            return None  # "*" and other odd targets: let the caller ask Kong instead
        authority = m.group(0).split("://", 1)[1]
        target = target[m.end():] or "/"
        if target.startswith("?"):
            target = "/" + target
    return method, target, authority


def unescape(text: str) -> str:
    """ngx.unescape_uri as get_uri_args applies it: '+' is a space, bad escapes stay."""
    if "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    raw = _ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), text.encode("utf-8",
                                                                           "surrogateescape"))
    return raw.decode("utf-8", "surrogateescape")


def parse_query(raw: str) -> dict[str, list[str]]:
    """The query as kong.request.get_query() returns it via Kong's RPC ({name: [values]}).

    An argument without '=' is Lua's ``true``, which Kong's RPC turns into an empty list.
    """
    args: dict[str, list[str]] = {}
    for part in raw.split("&"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not name:
            continue
        values = args.setdefault(unescape(name), [])
        if eq:
            values.append(unescape(value))
    return args


def strip_query(raw: str, names: tuple[str, ...]) -> str:
    """``raw`` without the arguments called ``names``; other arguments stay byte for byte."""
    drop = set(names)
    kept = [p for p in raw.split("&") if p and unescape(p.partition("=")[0]) not in drop]
    return "&".join(kept)


def kong_escape(path: str) -> str:
    """kong/tools/uri.lua ``escape``: the path Kong forwards upstream for a normalised path."""
    raw = path.encode("utf-8", "surrogateescape")
    if _UNSAFE.search(raw) is None:
        return path
    return _UNSAFE.sub(lambda m: b"%%%02X" % m.group(0)[0], raw).decode("ascii")
