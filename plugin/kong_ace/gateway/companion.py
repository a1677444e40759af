"""Companion mode: the request from ace-context's ngx.ctx table, the verdict for ace-guard.

The Lua companions (``plugin/kong/plugins/ace-context`` and ``ace-guard``, SPEC §9) move the
data; this module turns ace-context's table into a core ``Request`` and a ``Decision`` into the
table ace-guard applies. Shapes (keep them in step with both handler.lua files):

- request (``kong_ace_request``): ``method``, ``target`` (``$request_uri``), ``path`` (Kong's
  normalised path), ``host`` (the Host header), ``authority`` (nginx ``$host``), ``headers``
  (``ngx.req.get_headers(1000)``: a string or a list per lower-cased name),
  ``headers_truncated``, ``consumer`` (``id``, ``username``, ``custom_id``), ``credential``,
  ``anonymous`` (the three flags absent when false), ``service`` (``id``, ``name``), and for a
  POST with a form or JSON body ``body`` (the buffered body, or ``""`` when it cannot spell
  ``_method``) or ``body_spilled`` (nginx wrote it to a file, or it is larger than
  ``body_limit``);
- verdict (``kong_ace_verdict``): a denial ``{status, body, headers?, summary}`` or an
  admission ``{allow: true, set, clear?, query?, path?, path_if?, path_refusal?,
  response_headers?, authenticate?, anonymous?, summary}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kong_ace.core.decision import UNEXPECTED, Decision, Request
from kong_ace.core.target import ESCAPED_SLASH
from kong_ace.gateway.request_line import kong_escape, parse_query, strip_query
from kong_ace.gateway.summary import summary  # the same summary as classic mode

REQUEST_KEY = "kong_ace_request"
VERDICT_KEY = "kong_ace_verdict"

ERROR_BODY = {"message": UNEXPECTED}
PATH_REFUSAL = {"message": ESCAPED_SLASH}  # the route rewrote a path ACE would unescape


class MalformedContext(ValueError):
    """ace-context's table is not the shape its handler.lua writes."""


def request_from(ctx: Any) -> Request:
    """The core ``Request`` for ace-context's table."""
    if not isinstance(ctx, Mapping):
        raise MalformedContext("the request context must be a map")
    get = ctx.get
    method, target = get("method"), get("target")
    if type(method) is not str or type(target) is not str:
        raise MalformedContext("method and target must be strings")
    raw_path, _, raw_query = target.partition("?")
    path = get("path")
    normalized = type(path) is str and bool(path)  # Kong's: never normalised a second time
    if not normalized:
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
    body = get("body")
    return Request(
        method,
        path,
        headers,
        # Parsed whenever present: a `_method` override matters even without keys in the query.
        parse_query(raw_query) if raw_query else {},
        host if type(host) is str else None,
        service if service and isinstance(service, Mapping) else None,
        consumer,
        target,
        authority if type(authority) is str else None,
        credential,
        bool(get("headers_truncated")),
        normalized,
        body if type(body) is str or type(body) is bytes else None,
        get("body_spilled") is True,
    )


def verdict_for(d: Decision, target: str, anonymous: str | None,
                path: str = "/") -> dict[str, Any]:
    """The table ace-guard applies for ``d``; ``anonymous``: the configured anonymous ref.

    ``path``: Kong's normalised path, needed only when ``d.upstream_path`` is set.
    """
    if not d.allowed:
        denial: dict[str, Any] = {
            "status": d.status or 500,
            "body": d.body or ERROR_BODY,
            "summary": summary(d),
        }
        if d.headers:
            denial["headers"] = dict(d.headers)
        return denial
    # ACE owns its identity headers on every request: the core names every spelling the
    # client sent (all of them when ace-context saw only the first 1000 header lines), and
    # setting a header replaces the client's copies of it. Only those cross: each name costs
    # Kong a MessagePack.lua string and a clear_header.
    admission: dict[str, Any] = {"allow": True, "set": _plain(d.upstream_headers),
                                 "summary": summary(d)}
    if d.clear_upstream_headers:
        admission["clear"] = list(d.clear_upstream_headers)
    if d.upstream_path is not None:
        # ace-guard forwards the decided path only if the route did not rewrite Kong's
        # (``$upstream_uri`` is still escape(normalised path), kong/runloop/handler.lua);
        # otherwise it refuses rather than guess the rewrite (docs/matching.md, Request confusion).
        admission["path"] = d.upstream_path
        admission["path_if"] = kong_escape(path)
        admission["path_refusal"] = PATH_REFUSAL
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
