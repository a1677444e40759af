"""What nginx refuses before Kong runs: the request-line checks of ngx_http_parse.c.

Found by the real-Kong conformance table (tests/realkong/cases.json): nginx 1.25 (OpenResty
1.25.3) answers 400 itself, before any Kong phase, for a method that is not upper-case letters,
``_`` and ``-`` (``ngx_http_parse_request_line``); a target that is neither ``/...`` nor
absolute-form; a control byte, space or DEL anywhere in the target; and, in the path, a ``%``
without two hex digits, an escape that decodes to NUL, or dot segments (escaped ones and those
around escaped slashes included) that climb above the root (``ngx_http_parse_complex_uri``,
``merge_slashes on``). Checked on the real Kong 3.9.1 (2026-12-06), one case each.
"""

from __future__ import annotations

import re

BAD_REQUEST = "Bad request"  # Kong's error page for a 400 nginx raises (kong/error_handlers.lua)
_METHOD = re.compile(r"^[A-Z_-]+$")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")


def _decoded_segments(path: str) -> list[bytes]:
    # nginx decodes every escape, then reads '/' (decoded ones too) as separators; a decoded
    # '%', '#' or '?' stays a plain character (sw_quoted_second).
    raw = path.encode("utf-8", "surrogateescape")
    out = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes((int(m.group(1), 16),)), raw)
    return out.split(b"/")


def refuses(method: str, target: str) -> bool:
    """Whether nginx answers 400 to ``METHOD TARGET HTTP/1.1`` before Kong sees it."""
    if not _METHOD.match(method) or _CONTROL.search(target):
        return True
    absolute = _ABSOLUTE.match(target)
    if absolute:
        target = target[absolute.end():] or "/"
    if not target.startswith("/"):
        return True  # "*", a bare authority without a path is handled above
    path = target.split("?", 1)[0]
    if _ESCAPE.search(path):
        return True
    depth = 0
    for segment in _decoded_segments(path)[1:]:
        if b"\0" in segment:
            return True
        if segment == b"..":
            depth -= 1
            if depth < 0:
                return True
        elif segment not in (b"", b"."):
            depth += 1
    return False
