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
    method, target = ctx.get("method"), ctx.get("target")
    if not isinstance(method, str) or not isinstance(target, str):
        raise MalformedContext("method and target must be strings")
    raw_path, _, raw_query = target.partition("?")
    path = ctx.get("path")
    if not isinstance(path, str) or not path:
        path = raw_path or "/"
    headers = ctx.get("headers")
    # MessagePack.lua packs an empty Lua table as an empty array.
    if not isinstance(headers, Mapping):
        if headers:
            raise MalformedContext("headers must be a map")
        headers = {}
    consumer = ctx.get("consumer")
    if not isinstance(consumer, Mapping) or not consumer:
        consumer = None
    # An anonymous consumer (authenticated without a credential, or marked by its auth
    # plugin) is not an authenticated caller (SPEC §8).
    credential = consumer is not None and bool(ctx.get("credential")) and not ctx.get("anonymous")
    host, authority = ctx.get("host"), ctx.get("authority")
    service = ctx.get("service")
    return Request(
        method,
        path,
        headers,
        parse_query(raw_query) if key_in_query and raw_query else {},
        host if isinstance(host, str) else None,
        service if isinstance(service, Mapping) and service else None,
        consumer,
        target,
        authority if isinstance(authority, str) else None,
        credential,
        bool(ctx.get("headers_truncated")),
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
    clear = list(IDENTITY_HEADERS)
    clear += [name for name in d.clear_upstream_headers if name not in clear]
    admission: dict[str, Any] = {
        "allow": True,
        "set": dict(d.upstream_headers),
        "clear": clear,
        "summary": summary(d, PASSED if d.operation_id is None else ALLOWED),
    }
    if d.clear_query:
        admission["query"] = strip_query(target.partition("?")[2], d.clear_query)
    if d.headers:
        admission["response_headers"] = dict(d.headers)
    if d.consumer is not None:
        admission["authenticate"] = d.consumer
        admission["anonymous"] = d.consumer == anonymous
    return admission


def summary(d: Decision, outcome: str) -> dict[str, Any]:
    """What Kong's logging plugins get under ``ace``: never a key, only names and counts."""
    out: dict[str, Any] = {"outcome": outcome}
    if not d.allowed:
        out["status"] = d.status or 500
    for name, value in (("operation", d.operation_id), ("application", d.application_id),
                        ("package", d.package), ("api", d.api)):
        if value is not None:
            out[name] = value
    remaining = d.headers.get(REMAINING) if d.headers else None
    if isinstance(remaining, (str, int)) and str(remaining).isdigit():
        out["remaining"] = int(remaining)
    return out
