"""The Lua companions, played on the harness's PDK exactly as their handler.lua files run.

``context`` is ``plugin/kong/plugins/ace-context/handler.lua`` and ``guard`` is
``plugin/kong/plugins/ace-guard/handler.lua``, line for line. The table of cases in
``tests/companions/cases.json`` runs against both (busted for the Lua, pytest for this file),
so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import re
from typing import Any

from kong_ace.core.catalog import is_uuid
from kong_ace.testing.pdk import KongPDK

REQUEST_KEY = "kong_ace_request"
VERDICT_KEY = "kong_ace_verdict"
MAX_HEADERS = 1000  # ace-context's ngx.req.get_headers(1000)

UNAVAILABLE_STATUS = 503
UNAVAILABLE = {"message": "access control unavailable"}
UNEXPECTED = {"message": "An unexpected error occurred"}

CONSUMER_ID = "X-Consumer-ID"
CONSUMER_CUSTOM_ID = "X-Consumer-Custom-ID"
CONSUMER_USERNAME = "X-Consumer-Username"
CREDENTIAL_IDENTIFIER = "X-Credential-Identifier"
ANONYMOUS = "X-Anonymous-Consumer"


# --- ace-context ------------------------------------------------------------------------------

def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def _ids(entity: Any) -> dict[str, Any] | None:
    if not isinstance(entity, dict):
        return None
    return _table(id=entity.get("id"), name=entity.get("name"))


def _table(**fields: Any) -> dict[str, Any]:
    """A Lua table literal: nil fields are absent."""
    return {k: v for k, v in fields.items() if v is not None}


def _lua_string(value: Any) -> Any:
    # Lua strings are bytes: a str carrying undecodable bytes (surrogate escapes, e.g. Kong's
    # normalised path of /%ff) goes out as those bytes, as MessagePack.lua would send them.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape")
    return value


def _pdk(pdk: KongPDK, method: str) -> Any:
    # A Lua-side PDK call: no round trip (pdk.call only records it and honours forced answers).
    return pdk.call(method, [])[1]


def request_headers(pdk: KongPDK) -> tuple[dict[str, Any], bool]:
    """``ngx.req.get_headers(MAX_HEADERS)``: the headers and whether there were more."""
    lines = sum(len(v) if isinstance(v, list) else 1 for v in pdk.req.headers.values())
    return pdk.get_headers(MAX_HEADERS), lines > MAX_HEADERS


def body_kind(content_type: Any) -> str | None:
    """ace-context's body_kind: the kinds of POST body Laravel reads ``_method`` from."""
    content_type = _first(content_type)
    if not isinstance(content_type, str):
        return None
    low = content_type.lower()
    media = re.match(r"^\s*([^;, ]*)", low).group(1)  # type: ignore[union-attr]
    if media == "application/x-www-form-urlencoded":
        return "form"
    if media == "multipart/form-data":
        return "multipart"
    return "json" if "/json" in low or "+json" in low else None


def may_override(kind: str, body: str | bytes) -> bool:
    """ace-context's may_override: whether the body can spell ``_method`` at all."""
    raw = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
    if b"method" in raw:
        return True
    if kind == "form":
        return b"%" in raw
    return kind == "json" and b"\\" in raw


def post_body(pdk: KongPDK, method: Any, headers: dict[str, Any]) -> tuple[Any, Any]:
    """ace-context's post_body: (body or "", None), (None, True) when spilled, or (None, None)."""
    if method != "POST":
        return None, None
    kind = body_kind(headers.get("content-type"))
    if kind is None:
        return None, None
    data = pdk.get_body_data()
    if data is not None:
        return (_lua_string(data) if may_override(kind, data) else ""), None
    if pdk.get_body_file() is not None:
        return None, True
    return "", None


def context(pdk: KongPDK) -> None:
    """ace-context's access handler."""
    ctx = pdk.ctx
    ctx.pop(VERDICT_KEY, None)
    headers, truncated = request_headers(pdk)
    consumer = _pdk(pdk, "kong.client.get_consumer")
    credential = _pdk(pdk, "kong.client.get_credential")
    caller = anonymous = None
    if isinstance(consumer, dict):
        caller = _table(id=consumer.get("id"), username=consumer.get("username"),
                        custom_id=consumer.get("custom_id"))
        anonymous = (credential is None
                     or _first(headers.get("x-anonymous-consumer")) == "true" or None)
    method = _pdk(pdk, "kong.request.get_method")
    body, spilled = post_body(pdk, method, headers)
    ctx[REQUEST_KEY] = _table(
        method=method,
        target=_lua_string(pdk.get_var("request_uri")),
        path=_lua_string(_pdk(pdk, "kong.request.get_path")),
        host=_lua_string(pdk.get_var("http_host")),
        authority=_lua_string(pdk.get_var("host")),
        headers=headers,
        headers_truncated=truncated or None,
        consumer=caller,
        credential=credential is not None or None,
        anonymous=anonymous,
        service=_ids(_pdk(pdk, "kong.router.get_service")),
        body=body,
        body_spilled=spilled,
    )


# --- ace-guard --------------------------------------------------------------------------------

def _is_status(v: Any) -> bool:
    whole = type(v) is int or (type(v) is float and v.is_integer())
    return whole and 100 <= v <= 599


def _is_names(v: Any) -> bool:
    if v is None or v == {}:  # an empty map is Lua's empty table too
        return True
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_header_value(v: Any) -> bool:
    if isinstance(v, (str, int, float, bool)):
        return True
    return v is not None and _is_names(v)


def _is_headers(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, list):  # an empty Lua table arrives as an array
        return not v
    return isinstance(v, dict) and all(
        isinstance(k, str) and _is_header_value(x) for k, x in v.items())


def _is_summary(v: Any) -> bool:
    return v is None or isinstance(v, (dict, list))


def _is_denial(v: dict[str, Any]) -> bool:
    body = v.get("body")
    return (_is_status(v.get("status")) and (body is None or isinstance(body, (dict, list, str)))
            and _is_headers(v.get("headers")) and _is_summary(v.get("summary")))


def _is_admission(v: dict[str, Any]) -> bool:
    auth = v.get("authenticate")
    return (v.get("allow") is True and v.get("status") is None
            and _is_headers(v.get("set")) and _is_names(v.get("clear"))
            and (v.get("query") is None or isinstance(v.get("query"), str))
            and (v.get("path") is None or (isinstance(v.get("path"), str)
                                           and isinstance(v.get("path_if"), str)
                                           and isinstance(v.get("path_refusal"), dict)))
            and _is_headers(v.get("response_headers"))
            and (auth is None or (isinstance(auth, str) and auth != ""))
            and (v.get("anonymous") is None or isinstance(v.get("anonymous"), bool))
            and _is_summary(v.get("summary")))


def _unavailable(pdk: KongPDK, reason: str) -> None:
    pdk.logs.append(("err", f"ace-guard: {reason}: answering {UNAVAILABLE_STATUS}"))
    pdk.do_exit(UNAVAILABLE_STATUS, dict(UNAVAILABLE))


def _set_or_clear(pdk: KongPDK, name: str, value: Any) -> None:
    pdk.set_upstream({name: value if isinstance(value, str) and value else []})


def _admit(pdk: KongPDK, v: dict[str, Any]) -> None:
    if v.get("path") is not None:
        if pdk.get_var("upstream_uri") != v["path_if"]:
            pdk.do_exit(400, v["path_refusal"])
            return
        pdk.set_path(v["path"])
    for name in v.get("clear") or []:
        pdk.set_upstream({name: []})
    if v.get("set"):
        pdk.set_upstream(dict(v["set"]))
    ref = v.get("authenticate")
    if ref:
        consumer = pdk.load_consumer(ref, not is_uuid(ref))
        if not isinstance(consumer, dict):
            pdk.logs.append(("err", f"ace-guard: consumer '{ref}' is configured but Kong has none"))
            pdk.do_exit(500, dict(UNEXPECTED))
            return
        pdk.authenticate(consumer, None)
        _set_or_clear(pdk, CONSUMER_ID, consumer.get("id"))
        _set_or_clear(pdk, CONSUMER_CUSTOM_ID, consumer.get("custom_id"))
        _set_or_clear(pdk, CONSUMER_USERNAME, consumer.get("username"))
        pdk.set_upstream({CREDENTIAL_IDENTIFIER: []})
        _set_or_clear(pdk, ANONYMOUS, "true" if v.get("anonymous") is True else None)
    if v.get("query") is not None:
        pdk.set_raw_query(v["query"])
    if v.get("response_headers"):
        pdk.set_response(dict(v["response_headers"]))
    if v.get("summary") is not None:
        pdk.serialized["ace"] = v["summary"]


def guard(pdk: KongPDK) -> None:
    """ace-guard's access handler."""
    v = pdk.ctx.get(VERDICT_KEY)
    if v is None:
        _unavailable(pdk, "no verdict from ace")
        return
    if not isinstance(v, dict):
        _unavailable(pdk, "malformed verdict from ace")
        return
    if v.get("allow") is None:
        if not _is_denial(v):
            _unavailable(pdk, "malformed verdict from ace")
            return
        if v.get("summary") is not None:
            pdk.serialized["ace"] = v["summary"]
        pdk.do_exit(int(v["status"]), v.get("body"), v.get("headers") or None)
        return
    if not _is_admission(v):
        _unavailable(pdk, "malformed verdict from ace")
        return
    _admit(pdk, v)
