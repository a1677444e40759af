"""gateway/companion.py: ace-context's table to a Request, a Decision to ace-guard's verdict."""

from __future__ import annotations

from typing import Any

import pytest

from kong_ace.core.decision import Decision, deny
from kong_ace.gateway.companion import MalformedContext, request_from, verdict_for

MOBILE = {"id": "c-1", "username": "mobile"}
CTX: dict[str, Any] = {
    "method": "GET", "target": "/a/../b?apikey=k&x=1", "path": "/b", "host": "api.example.com:8000",
    "authority": "api.example.com", "headers": {"host": "api.example.com:8000", "apikey": "k"},
    "headers_truncated": False, "consumer": MOBILE, "credential": True, "anonymous": False,
    "route": {"id": "r", "name": "flights"}, "service": {"id": "s", "name": "flights"},
}


def test_every_field_lands_where_the_core_reads_it() -> None:
    req = request_from(CTX)
    assert (req.method, req.path, req.target) == ("GET", "/b", "/a/../b?apikey=k&x=1")
    assert (req.host, req.authority) == ("api.example.com:8000", "api.example.com")
    assert req.query == {"apikey": ["k"], "x": ["1"]}
    assert req.headers == CTX["headers"] and req.headers_truncated is False
    assert (req.consumer, req.credential) == (MOBILE, True)
    assert req.service == {"id": "s", "name": "flights"}


@pytest.mark.parametrize(("change", "credential"), [
    ({"anonymous": True}, False),  # marked anonymous by its auth plugin
    ({"credential": False}, False),  # authenticated without a credential
    ({"consumer": None, "credential": True}, False),  # nobody authenticated
])
def test_an_anonymous_consumer_is_not_an_authenticated_caller(change: dict[str, Any],
                                                              credential: bool) -> None:
    assert request_from({**CTX, **change}).credential is credential


def test_lua_shapes_are_read_back() -> None:
    req = request_from({**CTX, "headers": [], "path": None, "consumer": [], "service": []})
    assert req.headers == {}  # an empty Lua table arrives as an array
    assert req.path == "/a/../b"  # no normalised path: the raw one (the core normalises it)
    assert (req.consumer, req.service) == (None, None)
    assert request_from({**CTX, "headers_truncated": True}).headers_truncated is True


@pytest.mark.parametrize("ctx", [["not", "a", "map"], "x", {**CTX, "method": None},
                                 {**CTX, "target": 5}, {**CTX, "headers": ["a"]}])
def test_a_malformed_table_is_an_error_not_a_guess(ctx: Any) -> None:
    with pytest.raises(MalformedContext):
        request_from(ctx)


def test_denial_verdict() -> None:
    d = deny(401, "No API key found in request", {"WWW-Authenticate": 'Key realm="kong"'},
             operation_id="op")
    assert verdict_for(d, "/x", None) == {
        "status": 401, "body": {"message": "No API key found in request"},
        "headers": {"WWW-Authenticate": 'Key realm="kong"'},
        "summary": {"outcome": "denied", "status": 401, "reason": "no_key", "operation": "op"}}


def test_admission_verdict_clears_every_spelling_and_strips_the_query() -> None:
    d = Decision(True, None, None, {"RateLimit-Remaining": "7"},
                 {"X-ACE-Operation-ID": "op", "X-ACE-Application-ID": "app",
                  "X-ACE-Package": "pkg"},
                 ("x_ace_api", "apikey"), ("apikey",), "op", "app", "pkg", None, "mobile")
    v = verdict_for(d, "/x?a=1&apikey=k&b=2", "anon")
    assert v["allow"] is True and "status" not in v
    assert v["set"] == {"X-ACE-Operation-ID": "op", "X-ACE-Application-ID": "app",
                        "X-ACE-Package": "pkg"}
    # Only what the core names (the client's spellings): the set replaces the canonical ones.
    assert v["clear"] == ["x_ace_api", "apikey"]
    assert v["query"] == "a=1&b=2"
    assert v["response_headers"] == {"RateLimit-Remaining": "7"}
    assert (v["authenticate"], v["anonymous"]) == ("mobile", False)
    assert v["summary"] == {"outcome": "allowed", "reason": "allowed", "operation": "op",
                            "application": "app",
                            "package": "pkg", "remaining": 7}
    assert verdict_for(Decision(True, consumer="anon"), "/", "anon")["anonymous"] is True


def test_pass_through_verdict_clears_only_what_the_client_sent() -> None:
    # Nothing to clear crosses to Kong when the client sent no identity header (each name
    # costs Kong a MessagePack.lua string and a clear_header)...
    v = verdict_for(Decision(True), "/elsewhere", None)
    assert v == {"allow": True, "set": {},
                 "summary": {"outcome": "passed", "reason": "pass_through"}}
    # ...and every spelling the client sent is cleared (the core names them, see target.py).
    forged = Decision(True, clear_upstream_headers=("x-ace-package", "X_ACE_API"))
    assert verdict_for(forged, "/elsewhere", None)["clear"] == ["x-ace-package", "X_ACE_API"]
