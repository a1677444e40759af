"""How upstream frameworks read argument names and request bodies (SPEC §8, second round).

PHP renames every argument name before the application sees it (``main/php_variables.c``
``php_register_variable_ex``), so ``.method``, ``+_method`` and ``_method%00x`` are all
``$_GET['_method']`` / ``$_POST['_method']``, which Laravel and Symfony honour as a method
override. Laravel also honours ``_method`` in the body of a POST: a form (urlencoded or
multipart, as PHP fills ``$_POST``) or, since it merges JSON input, a JSON object.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

OVERRIDE = "_method"
# A name can only read as `_method` if its decoded form contains these letters.
_HINT = "method"

FORM = "form"
MULTIPART = "multipart"
JSON_BODY = "json"
# A multipart body with more parts than this is not parsed (an uninspected body).
MAX_PARTS = 1000


def php_name(name: str) -> str:
    """The name PHP registers for an already percent-decoded argument name.

    Leading spaces dropped, a NUL ends the name, ' ' and '.' become '_'; a '[' closed later
    starts an array (the base name is returned, followed by '['); an unclosed '[' becomes '_'.
    """
    name = name.lstrip(" ")
    cut = name.find("\0")
    if cut >= 0:
        name = name[:cut]
    bracket = name.find("[")
    if bracket > 0 and name.find("]", bracket + 1) > 0:
        return name[:bracket].replace(" ", "_").replace(".", "_") + "["
    if bracket == 0:
        return ""  # an empty base name: PHP drops the argument
    # PHP 8 also turns ' ', '.' and '[' after an unclosed '[' into '_' (PHP 7 kept them).
    return name.replace(" ", "_").replace(".", "_").replace("[", "_")


def is_override_name(name: Any) -> bool:
    """Whether some upstream reads the (decoded) argument ``name`` as ``_method``."""
    if type(name) is not str or _HINT not in name:  # noqa: E721 - runs per query argument
        return False
    if name == OVERRIDE:
        return True
    php = php_name(name)
    return php == OVERRIDE or php == OVERRIDE + "["


def override_names(args: Iterable[Any]) -> tuple[str, ...]:
    """The argument names (as decoded) that some upstream reads as ``_method``."""
    return tuple(n for n in args if is_override_name(n))


def body_kind(content_type: Any) -> str | None:
    """FORM, MULTIPART or JSON_BODY for a Content-Type whose body Laravel reads, else None."""
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else None
    if not isinstance(content_type, str):
        return None
    low = content_type.lower()
    # PHP cuts the media type at the first ';', ',' or ' ' (main/SAPI.c sapi_read_post_data).
    media = low.strip()
    for sep in ";, ":
        media = media.split(sep, 1)[0]
    if media == "application/x-www-form-urlencoded":
        return FORM
    if media == "multipart/form-data":
        return MULTIPART
    # Laravel's Request::isJson: the header contains '/json' or '+json'.
    if "/json" in low or "+json" in low:
        return JSON_BODY
    return None


def body_overrides(kind: str, body: str | bytes, content_type: Any) -> list[str] | None:
    """Every value a body gives ``_method`` (a list, maybe empty); None: cannot be parsed."""
    raw = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
    if not may_override(kind, raw):
        return []  # no spelling of the name can be in it
    if kind == FORM:
        return _form(raw)
    if kind == MULTIPART:
        return _multipart(raw, content_type)
    return _json(raw)


def may_override(kind: str, raw: bytes) -> bool:
    """Whether a body of ``kind`` may spell ``_method`` (ace-context sends only those)."""
    if b"method" in raw:
        return True
    # '%6Dethod' in a form, '\u006dethod' in JSON.
    return (kind == FORM and b"%" in raw) or (kind == JSON_BODY and b"\\" in raw)


def _unquote_plus(raw: bytes) -> str:
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "surrogateescape")


def _form(raw: bytes) -> list[str]:
    values = []
    for part in raw.split(b"&"):
        name, _, value = part.partition(b"=")
        if is_override_name(_unquote_plus(name)):
            values.append(_unquote_plus(value))
    return values


def _boundary(content_type: Any) -> bytes | None:
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else None
    if not isinstance(content_type, str):
        return None
    low = content_type.lower()
    at = low.find("boundary=")
    if at < 0:
        return None
    value = content_type[at + 9:]
    if value.startswith('"'):
        end = value.find('"', 1)
        value = value[1:end] if end > 0 else value[1:]
    else:
        value = value.split(";", 1)[0].split(",", 1)[0].strip()
    return value.encode("utf-8", "surrogateescape") if value else None


def _multipart(raw: bytes, content_type: Any) -> list[str] | None:
    boundary = _boundary(content_type)
    if boundary is None:
        return None  # PHP would fill no $_POST, another parser may guess: not understood
    values = []
    parts = raw.split(b"--" + boundary)
    if len(parts) > MAX_PARTS:
        return None
    for part in parts[1:]:
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, value = part.partition(b"\n\n")
            if not sep:
                continue
        name = _part_name(head)
        if name is not None and is_override_name(name):
            if value.endswith(b"\r\n"):
                value = value[:-2]
            elif value.endswith(b"\n"):
                value = value[:-1]
            values.append(value.decode("utf-8", "surrogateescape"))
    return values


def _part_name(head: bytes) -> str | None:
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        key, colon, rest = line.partition(b":")
        if not colon or key.strip().lower() != b"content-disposition":
            continue
        text = rest.decode("utf-8", "surrogateescape")
        low = text.lower()
        at = -1
        for marker in ("; name=", ";name=", " name="):
            at = low.find(marker)
            if at >= 0:
                at += len(marker)
                break
        if at < 0:
            return None
        value = text[at:].lstrip()
        if value.startswith('"'):
            end = value.find('"', 1)
            return value[1:end] if end > 0 else value[1:]
        return value.split(";", 1)[0].strip()
    return None


def _json(raw: bytes) -> list[str] | None:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if type(doc) is not dict:
        return []
    value = doc.get(OVERRIDE)
    if value is None:
        return []
    return [value] if isinstance(value, str) else [json.dumps(value)]
