"""Hostile requests through the core and through the real plugin server (Kong's protocol).

Property: a request is admitted only if its normalised path (by a reference port of Kong's
normaliser, written in conftest) and its method match an operation that an approved
registration of the presenting application covers (read from the config dict), and the server
always answers with an exit or a clean "ret" — never an RPC error, never a hang.

Upstream oracle (SPEC §8): an admitted request, as it reaches the upstream (the path Kong
forwards, the headers and query left after ACE), is read again the way a percent-decoding
WSGI/ASGI server, a normalising framework, a ';'-stripping Tomcat/Jetty, a fragment-cutting
server, a backslash-splitting server, a case-insensitive router (Express, ASP.NET Core) and
method-override middleware (override headers, `_method` in the query as PHP names arguments,
`_method` in a form or JSON body as Laravel reads it) would, with API hosts read as Kong's
router reads its wildcards; each reading must route to operations the application is
entitled to, and the Host header and an absolute-form request line's host must agree. Under
if_present, a request passed through untouched must reach no operation under any reading.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kong_ace import Enforcer, Request
from kong_ace.core.normalize import normalize_path
from kong_ace.testing import KongNode, KongRequest, PluginServerProcess
from kong_ace.testing.pdk import KongPDK
from tests.idp import IdP, SigningKey

from .catalog import APP_OF_KEY, KEYS, hardening_config, oracle_ops
from .conftest import (
    entitled,
    host_key,
    kong_forwarded_path,
    kong_normalize,
    route,
    scale,
    template_regex,
    upstream_methods,
    upstream_readings,
)

# SPEC §8: segments an upstream reads differently from Kong
CONFUSING = ["12%2Fmanifest.json", "x%5Cy", "a;b", "12;x", "#", "12#/../x", "a%23b", "%2F..%2F",
             ";jsessionid=1", "x.json;a", "literal;", "%3A", "me%2F..%2Fme", "12%2f..%2fseats",
             "a%2Fb.json", "x;.json", "12%5C..%5Cmanifest.json"]
SEGMENTS = ["flights", "v1", "bookings", "v2", "customers", "me", "12", "seats", "airports",
            "manifest.json", "tickets", "7.pdf", "hand", "files", "a.json", "x-y", "static",
            "literal", "caf\u00e9", "caf%C3%A9", "CAF%c3%a9", ";edit", "..", ".", "%2e%2e",
            "%2E.", ".%2e", "%2F", "%2f..", "", ";x", "..;", "x;a=b", "%00", "\x00", "%ff",
            "%FF%FE", "\u202e", "\U0001f600", "x" * 300, "%66lights", "FLIGHTS", "a b",
            "%20", "%25", "%252e", "%5c..", "\\..", "%3b", "%3F", "%23", "~", "-", "{x}",
            *CONFUSING]
OVERRIDES = [("X-HTTP-Method-Override", "DELETE"), ("x_http_method", "PUT"),
             ("X-Method-Override", "GET"), ("X_HTTP_METHOD_OVERRIDE", "PATCH")]
HOSTS = [None, None, None, "api.example.com", "API.Example.COM:8000", "admin.example", "",
         "api.example.com.", "a.b.admin.example", "Admin.Example.org:8443", "x.admin.example."]
AUTHORITIES = [None] * 9 + ["api.example.com", "public.example", "API.example.com:80"]
METHODS = ["GET", "get", "Get", "gEt", "POST", "post", "HEAD", "head", "DELETE", "delete",
           "PUT", "PATCH", "OPTIONS", "TRACE", "CONNECT", "", "G ET", "GET\x00", "\u0130GET"]
KEY_VALUES = [*KEYS.values(), "", "wrong", KEYS["basic"].upper(), KEYS["basic"] + "\x00",
              KEYS["basic"][:-1], " " + KEYS["basic"], KEYS["basic"].encode() + b"\xff",
              b"\xff\xfe\xfd", "k" * 9000]
KEY_NAMES = ["apikey", "APIKEY", "ApiKey", "api_key", "api-key"]

CONFIG = hardening_config()
OPS = oracle_ops(CONFIG)
OPS_BY_ID = {op.op_id: op for op in OPS}


def _header_values(headers: dict[str, Any], name: str) -> list[Any]:
    out: list[Any] = []
    for k, v in headers.items():
        if k.lower() == name:
            out += v if isinstance(v, list) else [v]
    return out


def _unquote(s: str) -> str:
    return unquote_to_bytes(s.replace("+", " ")).decode("utf-8", "surrogateescape")


def _query_values(query: str, name: str) -> list[str]:
    out = []
    for part in query.split("&"):
        k, eq, v = part.partition("=")
        dk = unquote_to_bytes(k.replace("+", " ")).decode("utf-8", "surrogateescape")
        if dk == name and eq:
            out.append(unquote_to_bytes(v.replace("+", " ")).decode("utf-8", "surrogateescape"))
    return out


@st.composite
def hostile(draw: st.DrawFn) -> tuple[str, str, dict[str, Any], str]:
    """(method, raw path, headers, raw query)."""
    if draw(st.booleans()):  # near a real operation
        op = draw(st.sampled_from(OPS))
        plain = ["12", "abc", "x.json"]
        segs = [draw(st.sampled_from(plain) | st.sampled_from(CONFUSING)
                     | st.sampled_from(SEGMENTS)) if "{" in s else s
                for s in op.full.split("/")[1:]]
        for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
            segs.insert(draw(st.integers(0, len(segs))),
                        draw(st.sampled_from(["..", "%2e%2e", ".", "", "x/..", "%2F", ";a"])))
        path = "/" + "/".join(segs) + draw(st.sampled_from(["", "/", "//", "/.", "/.."]))
        method = draw(st.sampled_from([op.method, op.method.lower(), *METHODS])
                      | st.just(op.method))
    else:
        path = "/" + "/".join(draw(st.lists(st.sampled_from(SEGMENTS), max_size=8)))
        if draw(st.integers(0, 9)) == 0:
            path += "/" + "y" * draw(st.sampled_from([2000, 9000]))
        method = draw(st.sampled_from(METHODS))
    if draw(st.integers(0, 2)) == 0:  # hostile path and method, one good key
        key = draw(st.sampled_from([KEYS["basic"], KEYS["api"]]))
        if draw(st.booleans()):
            return method, path, {"ApiKey": key}, ""
        return method, path, {}, "apikey=" + key
    headers: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(KEY_NAMES), max_size=3)):
        value = draw(st.sampled_from(KEY_VALUES))
        if draw(st.booleans()):
            value = [value, draw(st.sampled_from(KEY_VALUES))]
        headers[name] = value
    if draw(st.booleans()):
        headers["x-ace-application-id"] = "forged"
    if draw(st.integers(0, 4)) == 0:
        headers["x-odd"] = draw(st.sampled_from([b"\xc3\x28", "v" * 16000, "\x00", ""]))
    if draw(st.integers(0, 3)) == 0:  # often a good key, so admissions happen
        headers["apikey"] = draw(st.sampled_from([KEYS["basic"], KEYS["api"]]))
    query_parts = draw(st.lists(st.sampled_from(
        ["apikey=" + KEYS["basic"], "apikey=" + KEYS["api"], "apikey=", "apikey", "apikey=wrong",
         "api%6bey=" + KEYS["basic"], "apikey=%ff", "a=1", "&", "apikey=" + KEYS["basic"][:5]
         + "%" + KEYS["basic"][5:], "_method=DELETE", "%5Fmethod=GET", ".method=DELETE",
         "+_method=PUT", "%20_method=DELETE", "_method%00x=DELETE", "_method[]=GET",
         "%2Emethod=GET"]), max_size=3))
    return method, path, headers, "&".join(query_parts)


FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data; boundary=B0undary"
BODIES = [
    (FORM, "a=1"), (FORM, "_method=DELETE"), (FORM, ".method=GET&a=1"), (FORM, "_%6Dethod=PUT"),
    (FORM, "_method=POST"), (FORM + "; charset=UTF-8", "+_method=DELETE"),
    (MULTIPART, '--B0undary\r\nContent-Disposition: form-data; name="_method"\r\n\r\n'
                "DELETE\r\n--B0undary--\r\n"),
    (MULTIPART, '--B0undary\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n'
                "\r\nmethod\r\n--B0undary--\r\n"),
    ("application/json", '{"_method": "GET"}'), ("application/json", '{"a": "_method"}'),
    ("text/plain", "_method=DELETE"),
]


@st.composite
def hostile_plus(draw: st.DrawFn) -> tuple[str, str, dict[str, Any], str, str | None,
                                          tuple[str | None, str | None, bool]]:
    """hostile() with method overrides, a Host header, an absolute-form host and a body
    (content type, body, spilled to a file)."""
    method, path, headers, query = draw(hostile())
    if draw(st.integers(0, 3)) == 0:
        headers = {**headers, **dict(draw(st.lists(st.sampled_from(OVERRIDES), max_size=2)))}
        method = draw(st.sampled_from([method, "POST"]))
    host = draw(st.sampled_from(HOSTS))
    if host is not None:
        headers = {**headers, "host": host}
    body: tuple[str | None, str | None, bool] = (None, None, False)
    if draw(st.integers(0, 3)) == 0:
        ctype, text = draw(st.sampled_from(BODIES))
        body = (ctype, text, draw(st.integers(0, 4)) == 0)
        headers = {**headers, "content-type": ctype}
        method = draw(st.sampled_from([method, "POST", "POST"]))
    return method, path, headers, query, draw(st.sampled_from(AUTHORITIES)), body


def _readings(method: str, forwarded: str, upstream_headers: dict[str, list[Any]],
              upstream_query: str, body: tuple[Any, ...]) -> Iterator[tuple[str, str, list[Any]]]:
    host = next((v for k, vs in upstream_headers.items() if k == "host" for v in vs
                 if isinstance(v, str)), None)
    for reader, path in upstream_readings(forwarded).items():
        for m in upstream_methods(method, upstream_headers, upstream_query, body[:2]):
            for fold in (False, True):
                yield f"{reader}{'-folded' if fold else ''}", m, route(OPS, m, path, host, fold)


def check_upstream(method: str, raw_path: str, authority: str | None, app_id: str | None,
                   forwarded: str, upstream_headers: dict[str, list[Any]],
                   upstream_query: str, body: tuple[Any, ...] = (None, None)) -> None:
    """Every upstream reading of an admitted request is an operation ``app_id`` may call."""
    host = [v for k, vs in upstream_headers.items() if k == "host" for v in vs]
    if authority is not None and host and isinstance(host[0], str):
        assert host_key(authority) == host_key(host[0]), (authority, host)
    for reader, m, ops in _readings(method, forwarded, upstream_headers, upstream_query, body):
        assert ops, (reader, m, raw_path)
        for op in ops:
            assert entitled(CONFIG, app_id or "", op.api, op.method, op.template,
                            op.op_id), (reader, m, raw_path, op)


def check_pass_through(method: str, raw_path: str, forwarded: str,
                       upstream_headers: dict[str, list[Any]], upstream_query: str,
                       body: tuple[Any, ...]) -> None:
    """if_present: a request ACE let through untouched reaches no operation upstream."""
    for reader, m, ops in _readings(method, forwarded, upstream_headers, upstream_query, body):
        assert not ops, (reader, m, raw_path, ops)


def check_admission(method: str, path: str, headers: dict[str, Any], query: str,
                    op_id: str | None, app_id: str | None) -> None:
    """An admitted request: the oracle's view of why it may pass."""
    assert op_id is not None, "match_policy required: every admission names an operation"
    op = OPS_BY_ID[op_id]
    norm = kong_normalize(path)
    assert method == op.method or (
        method == "HEAD" and op.method == "GET"
        and not any(o.method == "HEAD" and o.full == op.full for o in OPS)), (method, op)
    assert template_regex(op.full).fullmatch(norm), (path, norm, op.full)
    presented = {v for n in ("apikey",) for v in _header_values(headers, n) + _query_values(
        query, n) if isinstance(v, (str, bytes)) and v}
    assert len(presented) == 1, presented  # one distinct key, and it is known
    (key,) = presented
    assert APP_OF_KEY.get(key if isinstance(key, str) else "") == app_id, (key, app_id)
    assert entitled(CONFIG, app_id, op.api, op.method, op.template, op.op_id), (app_id, op)


SETTINGS = settings(max_examples=scale(600, 20000), deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck), database=None)


def test_reference_normaliser_agrees_with_the_core() -> None:
    @SETTINGS
    @given(st.lists(st.sampled_from(SEGMENTS + ["/", "//", "%2e", "%2E%2e", "a%2Fb", "..."]),
                    max_size=10).map(lambda s: "/" + "/".join(s)))
    def prop(path: str) -> None:
        assert normalize_path(path) == kong_normalize(path)
        # Not idempotent (neither is Kong's: %%32%65 is %2e, then '.'): run once, never twice.
    prop()


ENF = Enforcer(copy.deepcopy(CONFIG))
CONFIG_IF_PRESENT = hardening_config(match_policy="if_present")
CORE_ADMITTED: list[str] = []


def _as_upstream(headers: dict[str, Any], query: str, d: Any) -> tuple[dict[str, list[Any]],
                                                                        str]:
    """What reaches the upstream after a decision: nginx clears by exact name, any case."""
    out: dict[str, list[Any]] = {}
    for k, v in headers.items():
        out.setdefault(k.lower(), []).extend(v if isinstance(v, list) else [v])
    for name in d.clear_upstream_headers:
        out.pop(name.lower(), None)
    for name, value in d.upstream_headers.items():
        out[name.lower()] = [value]
    kept = [p for p in query.split("&")
            if p and _unquote(p.partition("=")[0]) not in set(d.clear_query)]
    return out, "&".join(kept)


CORE_SETTINGS = settings(SETTINGS, max_examples=scale(3000, 30000))
SERVER_SETTINGS = settings(SETTINGS, max_examples=scale(1000, 20000))


@pytest.mark.parametrize("policy", ["required", "if_present"])
def test_core_admits_only_the_entitled(policy: str) -> None:
    CORE_ADMITTED.clear()
    enf = ENF if policy == "required" else Enforcer(copy.deepcopy(CONFIG_IF_PRESENT))
    passed: list[str] = []

    @CORE_SETTINGS
    @given(hostile_plus())
    def prop(req: tuple[str, str, dict[str, Any], str, str | None, tuple[Any, ...]]) -> None:
        method, path, headers, query, authority, body = req
        q: dict[str, list[str]] = {}  # decoded, as kong.request.get_query() hands it over
        for part in query.split("&"):
            k, eq, v = part.partition("=")
            if k:
                q.setdefault(_unquote(k), []).extend([_unquote(v)] if eq else [])
        host = headers.get("host")
        d = enf.decide(Request(method, path, headers=headers, query=q, host=host,
                               target=path + ("?" + query if query else ""),
                               authority=authority, body=body[1], body_spilled=body[2]))
        if d.allowed and d.operation_id is None and policy == "if_present":
            up_headers, up_query = _as_upstream(headers, query, d)
            check_pass_through(method, path, kong_forwarded_path(path), up_headers, up_query,
                               body)
            passed.append(path)
        elif d.allowed:
            check_admission(method, path, headers, query, d.operation_id, d.application_id)
            up_headers, up_query = _as_upstream(headers, query, d)
            forwarded = getattr(d, "upstream_path", None) or kong_forwarded_path(path)
            check_upstream(method, path, authority, d.application_id, forwarded, up_headers,
                           up_query, body)
            CORE_ADMITTED.append(d.operation_id or "")
        else:
            assert d.status in (400, 401, 403, 404, 405) and d.message
    prop()
    # The property is not vacuous: admissions happen (see also the positive control below).
    assert len(CORE_ADMITTED) >= 10 and len(set(CORE_ADMITTED)) >= 3, CORE_ADMITTED
    assert policy == "required" or len(passed) >= 10, passed


@pytest.fixture(scope="module")
def server() -> Iterator[PluginServerProcess]:
    with PluginServerProcess(args=("--event-timeout", "10")) as srv:
        yield srv


MODES = pytest.mark.parametrize("companions", [False, True], ids=["classic", "companion"])


@MODES
def test_server_admits_only_the_entitled_and_always_answers(server: PluginServerProcess,
                                                            companions: bool) -> None:
    # nginx=False: the server also gets what nginx itself would refuse (testing/nginx.py)
    node = KongNode(server.socket, copy.deepcopy(CONFIG), workers=2, companions=companions,
                    nginx=False)
    for w in node.workers:
        w.rpc.timeout = 15.0  # a hang fails the test instead of waiting forever
    admitted: list[str] = []
    statuses: dict[int, int] = {}

    @SERVER_SETTINGS
    @given(hostile_plus(), st.integers(0, 1))
    def prop(req: tuple[str, str, dict[str, Any], str, str | None, tuple[Any, ...]],
             worker: int) -> None:
        method, path, headers, query, authority, body = req
        target = path + ("?" + query if query else "")
        if not re.fullmatch(r"[A-Za-z]+", method):
            authority = None  # nginx refuses such a request line before Kong runs
        line = None if authority is None else f"{method} http://{authority}{target} HTTP/1.1"
        r = node.request(KongRequest(method=method, path=target, headers=headers,
                                     request_line=line, body=body[1], body_in_file=body[2]),
                         worker=worker)
        assert r.errors == [], r.errors  # an RPC error is a request Kong lets through
        statuses[r.status] = statuses.get(r.status, 0) + 1
        if r.proxied:
            op_id = r.upstream("X-ACE-Operation-ID")
            app_id = r.upstream("X-ACE-Application-ID")
            check_admission(method, path, headers, query, op_id, app_id)
            forwarded = (r.upstream_path if "kong.service.request.set_path" in r.pdk_calls
                         else kong_forwarded_path(path.partition("?")[0]))
            check_upstream(method, path, authority, app_id, forwarded, r.upstream_headers,
                           r.upstream_query, body)
            admitted.append(op_id)
        else:
            assert r.status in (400, 401, 403, 404, 405), (r.status, r.body)
            assert isinstance(r.message, str) and r.message
        # The core, given the same raw request, decides the same.
        hl: dict[str, list[Any]] = {}
        for k, v in headers.items():
            hl.setdefault(k.lower(), []).extend(v if isinstance(v, list) else [v])
        from kong_ace.gateway.request_line import parse_query
        host = hl.get("host", [None])[0]
        if companions and authority is None:
            # ace-context always sends nginx's $host (the Host header, else the server name).
            authority = KongPDK(KongRequest(method=method, path=target, headers=headers),
                                []).nginx_host()
        # Companion mode reads a buffered body in Lua (a spilled one stays uninspected);
        # classic mode reads a small body even from its file.
        spilled = companions and body[2]
        d = ENF.decide(Request(method, path, headers=hl, query=parse_query(query), host=host,
                               target=target, authority=authority,
                               body=None if spilled else body[1], body_spilled=spilled))
        assert (d.allowed, d.status) == (r.proxied, None if r.proxied else r.status)

    prop()
    node.close()
    assert len(admitted) >= 10 and len(set(admitted)) >= 3, (admitted, statuses)
    assert "Traceback" not in server.log, server.log[-3000:]
    assert server.alive()


@MODES
def test_positive_control_every_entitled_operation_is_admitted(
        server: PluginServerProcess, companions: bool) -> None:
    """The oracle says who may pass; each such clean request does pass (server and core)."""
    node = KongNode(server.socket, copy.deepcopy(CONFIG), workers=1, companions=companions)
    checked = 0
    for key, app_id in APP_OF_KEY.items():
        for op in OPS:
            if not entitled(CONFIG, app_id, op.api, op.method, op.template, op.op_id):
                continue
            path = op.full.replace("{", "p").replace("}", "")
            if app_id == "revoked-app":
                continue  # entitled by registration, but its key is revoked
            if ";" in path:
                continue  # SPEC §8: ';' under an API is refused (Tomcat reads another path)
            headers = {"apikey": key, **({"host": "a.b.admin.example"} if op.hosts else {})}
            r = node.request(KongRequest(method=op.method, path=path, headers=headers))
            assert (r.status, r.upstream("X-ACE-Operation-ID")) == (200, op.op_id), (op, r.body)
            checked += 1
    node.close()
    assert checked >= 10


# --- bearer tokens (SPEC §11): forged, tampered or stale tokens are never admitted ---------------


@pytest.fixture(scope="module")
def token_idp() -> Iterator[IdP]:
    with IdP() as idp:
        yield idp


def _b64(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class TokenWorld:
    """Good tokens (the only ones that may pass), and material to forge others from."""

    def __init__(self, idp: IdP) -> None:
        self.idp = idp
        self.read = [idp.token(idp.rsa, ttl=3600), idp.token(idp.ec, ttl=3600)]
        self.write = idp.token(idp.rsa, ttl=3600, scope="flights:read flights:write")
        mallory = SigningKey("RS256", kid=idp.rsa.kid)
        mallory_ec = SigningKey("ES256", kid=idp.ec.kid)
        self.bad = [
            idp.token(mallory, ttl=3600), idp.token(mallory_ec, ttl=3600),
            idp.token(mallory, ttl=3600, scope="flights:write"),
            idp.token(idp.rsa, now=time.time() - 7200, ttl=60),  # expired
            idp.token(idp.ec, nbf=int(time.time() + 7200)),  # not yet valid
            idp.token(idp.rsa, aud="other-api"), idp.token(idp.rsa, iss="http://evil"),
            idp.token(idp.rsa, client_id="stranger"),
            idp.token(idp.ec, headers={"kid": idp.rsa.kid}),  # EC signature, RSA kid
        ]
        self.pems = [idp.rsa.public_pem(), idp.ec.public_pem()]

    @property
    def good(self) -> set[str]:
        return {*self.read, self.write}


@st.composite
def hostile_token(draw: st.DrawFn, world: TokenWorld) -> str:
    """A token derived from a good or bad one by a forger's moves."""
    base = draw(st.sampled_from([*world.read, world.write, *world.bad]))
    h, p, s = base.split(".")
    other = draw(st.sampled_from([*world.read, world.write, *world.bad])).split(".")
    move = draw(st.sampled_from(["keep", "flip", "payload", "header", "none", "hs256", "cut",
                                 "extra", "junk", "resign", "claims"]))
    if move == "keep":
        return base
    if move == "flip":  # one character of the signature changed
        i = draw(st.integers(0, len(s) - 1))
        return f"{h}.{p}.{s[:i]}{'A' if s[i] != 'A' else 'B'}{s[i + 1:]}"
    if move == "payload":
        return f"{h}.{other[1]}.{s}"
    if move == "header":
        return f"{other[0]}.{p}.{s}"
    if move in ("none", "hs256"):
        header = json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))
        header["alg"] = "none" if move == "none" else draw(st.sampled_from(["HS256", "HS512"]))
        signing = f"{_b64(header)}.{p}"
        if move == "none":
            return signing + draw(st.sampled_from([".", f".{s}"]))
        secret = draw(st.sampled_from(world.pems))
        digest = hashlib.sha256 if header["alg"] == "HS256" else hashlib.sha512
        return f"{signing}.{_b64(hmac.new(secret, signing.encode(), digest).digest())}"
    if move == "cut":
        return base[: draw(st.integers(0, len(base) - 1))]
    if move == "extra":
        return base + draw(st.sampled_from([".", ".x", "..", " ", "\x00", "=", "a" * 9000]))
    if move == "junk":
        return draw(st.text(max_size=60))
    if move == "claims":  # claims edited, the original signature kept
        claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
        claims.update(draw(st.sampled_from([{"scope": "flights:read flights:write"},
                                            {"exp": 4_000_000_000}, {"client_id": "web-client"},
                                            {"aud": "flights-api"}])))
        return f"{h}.{_b64(claims)}.{s}"
    # resign: a good token's claims under an attacker key that claims the IdP's kid
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    forger = SigningKey(draw(st.sampled_from(["RS256", "ES256"])),
                        kid=draw(st.sampled_from([world.idp.rsa.kid, world.idp.ec.kid])))
    return jwt.encode(claims, forger.private, algorithm=forger.alg, headers={"kid": forger.kid})


def _token_case(draw: st.DrawFn, world: TokenWorld) -> tuple[str, dict[str, Any]]:
    method = draw(st.sampled_from(["GET", "POST"]))
    token = draw(hostile_token(world))
    scheme = draw(st.sampled_from(["Bearer ", "bearer ", "BEARER ", "Bearer  ", "Basic "]))
    value: Any = scheme + token
    if draw(st.integers(0, 5)) == 0:
        value = [value, "Bearer " + draw(st.sampled_from(sorted(world.good)))]
    return method, {"authorization": value}


def _token_admission_ok(world: TokenWorld, method: str, headers: dict[str, Any],
                        app_id: str | None) -> None:
    value = headers["authorization"]
    assert isinstance(value, str), value  # two Authorization headers never pass
    scheme, _, token = value.partition(" ")
    assert scheme.lower() == "bearer", value
    assert token.strip() in world.good, token[:40]
    assert app_id == "web"
    assert method == "GET" or token.strip() == world.write


def test_forged_tokens_are_never_admitted(token_idp: IdP, server: PluginServerProcess) -> None:
    from tests.core.test_tokens import auth_config

    world = TokenWorld(token_idp)
    config = auth_config(token_idp)
    enf = Enforcer(copy.deepcopy(config))
    node = KongNode(server.socket, copy.deepcopy(config), workers=1)
    node.workers[0].rpc.timeout = 15.0
    seen = {"core": 0, "server": 0}

    @settings(max_examples=scale(300, 5000), deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck), database=None)
    @given(st.data())
    def prop(data: st.DataObject) -> None:
        method, headers = data.draw(st.composite(lambda draw: _token_case(draw, world))())
        d = enf.decide(Request(method, "/flights/v1/flights", headers=headers))
        if d.allowed:
            _token_admission_ok(world, method, headers, d.application_id)
            seen["core"] += 1
        else:
            assert d.status in (401, 403) and d.message
        if data.draw(st.integers(0, 3)) == 0:  # the real server too, for a quarter of them
            r = node.request(KongRequest(method=method, path="/flights/v1/flights",
                                         headers=headers))
            assert r.errors == [] and (r.proxied, r.status) == (d.allowed, d.status or 200)
            if r.proxied:
                _token_admission_ok(world, method, headers, r.upstream("X-ACE-Application-ID"))
                seen["server"] += 1

    prop()
    node.close()
    assert seen["core"] >= 10 and seen["server"] >= 2, seen  # not vacuous
    assert server.alive() and "Traceback" not in server.log
