"""Companion mode: the request from ace-context's ngx.ctx table, the verdict for ace-guard.

The Lua companions (``plugin/kong/plugins/ace-context`` and ``ace-guard``, SPEC §9) move the
data; this module turns ace-context's table into a core ``Request`` and a ``Decision`` into the
table ace-guard applies. Shapes (keep them in step with both handler.lua files):

- request (``kong_ace_request``): ``method``, ``target`` (``$request_uri``), ``path`` (Kong's
  normalised path), ``host`` (the Host header), ``authority`` (nginx ``$host``), ``headers``
  (``ngx.req.get_headers(1000)``: a string or a list per lower-cased name),
  ``headers_truncated``, ``consumer`` (``id``, ``username``, ``custom_id``), ``credential``,
  ``anonymous``, ``route`` and ``service`` (``id``, ``name``);
- verdict (``kong_ace_verdict``): a denial ``{status, body, headers?, summary}`` or an
  admission ``{allow: true, set, clear, query?, response_headers?, authenticate?, anonymous?,
  summary}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kong_ace.core.decision import IDENTITY_HEADERS, UNEXPECTED, Decision, Request
from kong_ace.gateway.request_line import parse_query, strip_query

REQUEST_KEY = "kong_ace_request"
VERDICT_KEY = "kong_ace_verdict"

ERROR_BODY = {"message": UNEXPECTED}
REMAINING = "RateLimit-Remaining"
CLEAR_IDENTITY = list(IDENTITY_HEADERS)  # sent as is; never mutated

# Outcomes in the log summary (kong.log.set_serialize_value("ace", summary)).
ALLOWED = "allowed"
PASSED = "passed"  # no operation matched and the policy let it through
DENIED = "denied"


class MalformedContext(ValueError):
    """ace-context's table is not the shape its handler.lua writes."""


def request_from(ctx: Any, key_in_query: bool = True) -> Request:
    """The core ``Request`` for ace-context's table."""
    if not isinstance(ctx, Mapping):
        raise MalformedContext("the request context must be a map")
    get = ctx.get
    method, target = get("method"), get("target")
    if type(method) is not str or type(target) is not str:
        raise MalformedContext("method and target must be strings")
    raw_path, _, raw_query = target.partition("?")
    path = get("path")
    if type(path) is not str or not path:
        path = raw_path or "/"
    headers = get("headers")
    # MessagePack.lua packs an empty Lua table as an empty array.
    if not isinstance(headers, Mapping):
        if headers:
            raise MalformedContext("headers must be a map")
        headers = {}
    consumer = get("consumer")
    if not consumer or not isinstance(consumer, Mapping):
        consumer = None
    # An anonymous consumer (authenticated without a credential, or marked by its auth
    # plugin) is not an authenticated caller (SPEC §8).
    credential = consumer is not None and bool(get("credential")) and not get("anonymous")
    host, authority, service = get("host"), get("authority"), get("service")
    return Request(
        method,
        path,
        headers,
        parse_query(raw_query) if key_in_query and raw_query else {},
        host if type(host) is str else None,
        service if service and isinstance(service, Mapping) else None,
        consumer,
        target,
        authority if type(authority) is str else None,
        credential,
        bool(get("headers_truncated")),
    )


def verdict_for(d: Decision, target: str, anonymous: str | None) -> dict[str, Any]:
    """The table ace-guard applies for ``d``; ``anonymous``: the configured anonymous ref."""
    if not d.allowed:
        denial: dict[str, Any] = {
            "status": d.status or 500,
            "body": d.body or ERROR_BODY,
            "summary": summary(d, DENIED),
        }
        if d.headers:
            denial["headers"] = dict(d.headers)
        return denial
    # ACE owns its identity headers on every request: clearing costs nothing in Lua.
    extra = d.clear_upstream_headers
    admission: dict[str, Any] = {
        "allow": True,
        "set": _plain(d.upstream_headers),
        "clear": [*IDENTITY_HEADERS, *extra] if extra else CLEAR_IDENTITY,
        "summary": summary(d, PASSED if d.operation_id is None else ALLOWED),
    }
    if d.clear_query:
        admission["query"] = strip_query(target.partition("?")[2], d.clear_query)
    if d.headers:
        admission["response_headers"] = _plain(d.headers)
    if d.consumer is not None:
        admission["authenticate"] = d.consumer
        admission["anonymous"] = d.consumer == anonymous
    return admission


def _plain(headers: Mapping[str, Any]) -> dict[str, Any]:
    # msgpack packs dicts only; the core's maps are dicts already (no copy on the hot path).
    return headers if type(headers) is dict else dict(headers)


def summary(d: Decision, outcome: str) -> dict[str, Any]:
    """What Kong's logging plugins get under ``ace``: never a key, only names and counts."""
    out: dict[str, Any] = {"outcome": outcome}
    if not d.allowed:
        out["status"] = d.status or 500
    if d.operation_id is not None:
        out["operation"] = d.operation_id
    if d.application_id is not None:
        out["application"] = d.application_id
    if d.package is not None:
        out["package"] = d.package
    if d.api is not None:
        out["api"] = d.api
    remaining = d.headers.get(REMAINING) if d.headers else None
    if type(remaining) is str and remaining.isdigit():
        out["remaining"] = int(remaining)
    return out
