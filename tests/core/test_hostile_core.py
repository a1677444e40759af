"""Hostile input through the core: nothing crashes, and nothing reaches what it may not."""

from __future__ import annotations

import copy
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kong_ace import ConfigError, Enforcer, Request
from kong_ace.core.normalize import normalize_path
from tests.conftest import PARTNER_KEY, WEB_KEY, example_config

SEGMENTS = ["flights", "v1", "bookings", "v2", "customers", "me", "12", "seats", "airports",
            "manifest.json", "tickets", "7.pdf", "..", ".", "%2e%2e", "%2E.", "%2F", "%2f..", "",
            ";x", "..;", "%00", "é", "%C3%A9", "x" * 300, "%66lights", "FLIGHTS", "\x00"]
METHODS = ["GET", "get", "Get", "POST", "HEAD", "DELETE", "PUT", "PATCH", "OPTIONS", "", "G ET",
           "TRACE", "GET\x00"]
KEYS = [WEB_KEY, PARTNER_KEY, "", "wrong", WEB_KEY.upper(), WEB_KEY + "\x00", b"\xff\xfe",
        WEB_KEY.encode(), [WEB_KEY, WEB_KEY], [WEB_KEY, ""], [], True, None, 7]
SERVICES = [None, {"id": "1", "name": "flights"}, {"id": "2", "name": "bookings"}, "flights",
            {"name": None}, 5, {"id": "x"}]
CONSUMERS = [None, {"id": "c", "username": "mobile"}, {"username": "other"}, "mobile", 3,
             {"id": None}]

paths = st.lists(st.sampled_from(SEGMENTS), max_size=7).map(lambda s: "/" + "/".join(s))
headers = st.dictionaries(
    st.sampled_from(["apikey", "ApiKey", "x-ace-application-id", "host", "X-ACE-API"]),
    st.sampled_from(KEYS), max_size=3,
).map(lambda h: {**h, "apikey": WEB_KEY} if len(h) == 3 else h)  # often a valid key
queries = st.dictionaries(st.sampled_from(["apikey", "page"]), st.sampled_from(KEYS), max_size=2)


def _template_regex(template: str) -> re.Pattern[str]:
    # Independent of the matcher: each {param} is one non-empty segment.
    parts = re.split(r"\{[^{}]+\}", template.rstrip("/") or "/")
    return re.compile("[^/]+".join(re.escape(p) for p in parts) + "/?")


def _entitled_targets(config: dict[str, Any], app_id: str, op: Any) -> set[str]:
    """Packages/APIs granting ``op`` to the app, read straight from the config dict."""
    (app,) = [a for a in config["applications"] if a["id"] == app_id]
    out = set()
    for reg in app["registrations"]:
        if reg["status"] != "approved":
            continue
        if reg.get("api") == op.api:
            out.add(op.api)
            continue
        (pkg,) = [p for p in config["packages"] if p["name"] == reg.get("package")]
        for e in pkg["operations"]:
            if e["api"] != op.api:
                continue
            whole = "operation_id" not in e and "method" not in e
            if whole or e.get("operation_id") == op.id or (
                e.get("method"), e.get("path")) == (op.method, op.template):
                out.add(pkg["name"])
    return out


CONFIG = example_config()
_ticks = iter(range(10**9))
# A clock that moves an hour a call keeps rate limits from hiding the authorization property.
ENF = Enforcer(copy.deepcopy(CONFIG), clock=lambda: 3600.0 * next(_ticks))
OPS = {op.id: op for op in ENF.catalog.operations()}
ALLOWED: list[str] = []


@st.composite
def near_misses(draw: st.DrawFn) -> tuple[str, str, Any]:
    """A real operation's method, service and path: parameters tricky, detours inserted."""
    op = draw(st.sampled_from(list(OPS.values())))
    method = draw(st.sampled_from([op.method, op.method, "HEAD", op.method.lower(), "PUT"]))
    service = draw(st.sampled_from([{"id": "s", "name": op.api}, op.api, None, "other"]))
    segs = [draw(st.sampled_from(SEGMENTS)) if "{" in seg else seg
            for seg in op.path.split("/")[1:]]
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(segs)))
        segs.insert(at, draw(st.sampled_from(["..", "%2e%2e", ".", "", "x/..", "%2F"])))
    path = "/" + "/".join(segs) + draw(st.sampled_from(["", "/", "//"]))
    return method, path, service


requests = st.one_of(
    st.tuples(st.sampled_from(METHODS), paths, st.sampled_from(SERVICES)), near_misses()
)
headers = st.one_of(headers, st.just({"apikey": WEB_KEY}))


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(request=requests, headers=headers, query=queries, consumer=st.sampled_from(CONSUMERS))
def _admits_only_the_entitled(request, headers, query, consumer) -> None:
    method, path, service = request
    d = ENF.decide(Request(method, path, headers=headers, query=query, service=service,
                           consumer=consumer))
    if not d.allowed:
        assert d.status in (400, 401, 403, 404, 405, 429) and d.message  # 400: SPEC §8
        return
    # match_policy is required in the example: every admitted request has an operation.
    op = OPS[d.operation_id]
    assert method == op.method or (method == "HEAD" and op.method == "GET")
    assert _template_regex(op.path).fullmatch(normalize_path(path)), (path, op.path)
    assert d.application_id is not None
    assert (d.package or d.api) in _entitled_targets(CONFIG, d.application_id, op)
    ALLOWED.append(d.operation_id)


def test_allowed_only_if_entitled() -> None:
    ALLOWED.clear()
    _admits_only_the_entitled()
    # The property must not pass by never admitting anything.
    assert len(set(ALLOWED)) >= 3 and len(ALLOWED) > 20


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


CONFIG_PATHS = _paths(CONFIG)[1:]


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(CONFIG_PATHS), value=json_values, drop=st.booleans())
def test_fuzzed_config_is_accepted_or_a_config_error(where, value, drop) -> None:
    config = copy.deepcopy(CONFIG)
    node = config
    for step in where[:-1]:
        node = node[step]
    if drop and isinstance(node, dict):
        del node[where[-1]]
    else:
        node[where[-1]] = value
    try:
        Enforcer(config)
    except ConfigError as exc:
        assert str(exc) and "Traceback" not in str(exc)
