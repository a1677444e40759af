"""Request-path normalisation exactly as Kong 3.x's router sees it (kong/tools/uri.lua)."""

from __future__ import annotations

import re

# Escapes of these stay escaped (only upper-cased): decoding them would change the path's meaning,
# above all %2F, which must never become a separator.
_RESERVED = frozenset(b"!*'();:@&=+$,/?%#[]")
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")


def _decode(m: re.Match[bytes]) -> bytes:
    octet = int(m.group(1), 16)
    if octet in _RESERVED:
        return m.group(0).upper()
    return bytes((octet,))


def decode_unreserved(text: str) -> str:
    """Percent-decode every octet but the reserved ones (whose escapes are upper-cased)."""
    if "%" not in text:
        return text
    raw = _ESCAPE.sub(_decode, text.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "surrogateescape")


def normalize_path(path: str) -> str:
    """Decode unreserved escapes, remove dot segments and merge slashes (idempotent)."""
    if path in ("", "/"):
        return path
    path = decode_unreserved(path)
    # Only a '.' that starts a segment can be a dot segment: same result as Kong's '.' test.
    if path[0] == "/" and "/." not in path and "//" not in path:
        return path
    return _remove_dots(path)


def _remove_dots(path: str) -> str:
    # RFC 3986 §5.2.4 with slash merging, in the order Kong applies its rules.
    out: list[str] = []
    while path:
        if path == "/.":
            path = "/"
        elif path == "/..":
            path = "/"
            if out:
                out.pop()
        elif path in (".", ".."):
            path = ""
        elif path.startswith("../"):
            path = path[3:]
        elif path.startswith("./") or path.startswith("/./"):
            path = path[2:]
        elif path.startswith("/../"):
            path = path[3:]
            if out:
                out.pop()
        elif path.startswith("//"):
            path = path[1:]
        else:
            cut = path.find("/", 1)
            if cut == -1:
                out.append(path)
                path = ""
            else:
                out.append(path[:cut])
                path = path[cut:]
    return "".join(out)
