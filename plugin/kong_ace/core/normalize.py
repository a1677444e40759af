"""Request-path normalisation exactly as Kong 3.x's router sees it (kong/tools/uri.lua)."""

from __future__ import annotations

import codecs
import re

# Escapes of these stay escaped (only upper-cased): decoding them would change the path's meaning,
# above all %2F, which must never become a separator.
_RESERVED = frozenset(b"!*'();:@&=+$,/?%#[]")
_HEX = "0123456789abcdefABCDEF"
# Every two hex digits (any case) -> what Kong writes for the escape, and the plain octet.
_KONG: dict[bytes, bytes] = {}
_PLAIN: dict[bytes, bytes] = {}
for _a in _HEX:
    for _b in _HEX:
        _octet = int(_a + _b, 16)
        _key = (_a + _b).encode()
        _PLAIN[_key] = bytes((_octet,))
        _KONG[_key] = b"%" + _key.upper() if _octet in _RESERVED else bytes((_octet,))


def _substitute(text: str, table: dict[bytes, bytes]) -> str:
    # One dict lookup per '%' (a regex with a Python callback costs several times more).
    parts = text.encode("utf-8", "surrogateescape").split(b"%")
    get = table.get
    # A table value is never empty, so `or` falls back only for a '%' without two hex digits.
    tail = [(get(p[:2]) or b"%" + p[:2]) + p[2:] for p in parts[1:]]
    return (parts[0] + b"".join(tail)).decode("utf-8", "surrogateescape")


# Many escapes (a hostile 8 KB path holds thousands): decode in C. Escapes that must stay are
# first rewritten as an escaped '%' followed by their upper-cased digits ('%25' first: the later
# rewrites produce '%25..', which must not be rewritten again), a '%' without two hex digits as
# an escaped '%'; then every '%' becomes '\\x' for codecs.escape_decode (backslashes doubled
# first, so no other escape exists). A regex template or callback would run Python per escape.
_MANY = 8
_LONE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
Keep = tuple[tuple[bytes, bytes], ...]


def _keeping(octets: bytes) -> Keep:
    out = []
    for code in sorted({b"%02X" % o for o in octets}, key=lambda c: c != b"25"):
        # Every reserved octet's first hex digit is a digit: two spellings at most.
        for spelling in dict.fromkeys((code, code.lower())):
            out.append((b"%" + spelling, b"%25" + code))
    return tuple(out)


_KEEP_KONG = _keeping(bytes(_RESERVED))
_KEEP_SLASH = _keeping(b"/")


def _decode_in_c(text: str, keep: Keep) -> str:
    raw = text.encode("utf-8", "surrogateescape")
    for escape, protected in keep:
        raw = raw.replace(escape, protected)
    raw = _LONE.sub(b"%25", raw.replace(b"\\", b"\\\\")).replace(b"%", b"\\x")
    decoded: bytes = codecs.escape_decode(raw)[0]  # type: ignore[attr-defined]
    return decoded.decode("utf-8", "surrogateescape")


def decode_unreserved(text: str) -> str:
    """Percent-decode every octet but the reserved ones (whose escapes are upper-cased)."""
    if "%" not in text:
        return text
    if text.count("%") > _MANY:
        return _decode_in_c(text, _KEEP_KONG)
    return _substitute(text, _KONG)


_PLAIN_BUT_SLASH = {k: (b"%2F" if v == b"/" else v) for k, v in _PLAIN.items()}


def decode_all(text: str, *, keep_slash: bool = False) -> str:
    """Percent-decode every octet once (as WSGI/ASGI servers do); ``%2F`` kept when asked.

    Not only the reserved escapes: Kong's single decoding pass can leave a new escape behind
    (``%%34%31`` becomes ``%41``), which the upstream decodes in turn.
    """
    if "%" not in text:
        return text
    if text.count("%") > _MANY:
        return _decode_in_c(text, _KEEP_SLASH if keep_slash else ())
    return _substitute(text, _PLAIN_BUT_SLASH if keep_slash else _PLAIN)


def normalize_path(path: str) -> str:
    """Kong's one normalising pass: decode unreserved escapes, remove dot segments, merge slashes.

    Not idempotent, exactly as Kong's is not: ``%%32%65`` decodes to ``%2e``, which a second
    pass would turn into a dot segment. Never run it on a path Kong already normalised.
    """
    if path in ("", "/"):
        return path
    path = decode_unreserved(path)
    # Only a '.' that starts a segment can be a dot segment: same result as Kong's '.' test.
    if path[0] == "/" and "/." not in path and "//" not in path:
        return path
    return remove_dots(path)


def remove_dots(path: str) -> str:
    """Dot segments removed and slashes merged (no decoding); linear in the path length."""
    if not path or path[0] != "/":
        return _remove_dots_relative(path)
    # For a path from the root, Kong's step-by-step rules (kong/tools/uri.lua normalize) come
    # down to: drop empty and '.' segments, '..' pops one, and a trailing '/', '/.' or '/..'
    # leaves a trailing slash. split/filter run in C: 8 KB of '//' costs one pass.
    parts = path.split("/")
    trailing = parts[-1] in ("", ".", "..")
    segs = list(filter(None, parts))
    if "." in path:
        out: list[str] = []
        for seg in segs:
            if seg == "..":
                if out:
                    out.pop()
            elif seg != ".":
                out.append(seg)
        segs = out
    if not segs:
        return "/"
    joined = "/" + "/".join(segs)
    return joined + "/" if trailing else joined


def _remove_dots_relative(path: str) -> str:
    # RFC 3986 §5.2.4 with slash merging, in the order Kong applies its rules; only for paths
    # that do not start with '/' (templates and base paths in tests), which are short.
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
