"""The quick path takes the real Kong's usual Host shape, and decides it as the full path does.

ace-context sends nginx's ``$host`` as the authority (lower case, no port) and the Host header
as Kong received it, port included: the two strings differ on most real requests, and the
quick path must still serve them, deciding exactly what the screen's host comparison decides.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kong_ace import Decision, Enforcer, Request
from kong_ace.core.target import _port_of, host_key
from tests.conftest import WEB_KEY, example_config

PATH = "/flights/v1/flights/BA1"

# (authority, Host header, whether the quick path may serve it)
SHAPES = [
    ("api.example.com", "api.example.com:8000", True),
    ("api.example.com", "API.Example.com:8443", True),
    ("api.example.com", "api.example.com.:8000", True),
    ("[::1]", "[::1]:8000", True),
    ("127.0.0.1", "127.0.0.1:8000", True),
    ("api.example.com", "api.example.com", True),
    ("api.example.com", "other.example.com:8000", False),  # refused: request-line host differs
    ("api.example.com", "api.example.com:8000:1", False),
    ("api.example.com", "user@api.example.com:8000", True),  # host_key drops the userinfo
    ("api.example.com", "", False),
]


def served(config: dict[str, Any], req: Request) -> tuple[Decision, Decision, bool]:
    """(decide(req), the full path's decision, whether the quick path answered)."""
    quick, full = Enforcer(config), Enforcer(config)
    answered = []
    inner = quick._quick

    def counting(r: Request, key: str) -> Any:
        got = inner(r, key)
        answered.append(type(got) is Decision)
        return got

    quick._quick = counting  # type: ignore[method-assign]
    return quick.decide(req), full.decide(req, full.route(req)), any(answered)


@pytest.mark.parametrize(("authority", "host", "quick"), SHAPES)
def test_real_kong_host_shapes(authority: str, host: str, quick: bool) -> None:
    req = Request("GET", PATH, headers={"host": host, "apikey": WEB_KEY}, host=host,
                  authority=authority, target=PATH, normalized=True)
    fast, slow, answered = served(example_config(), req)
    assert fast == slow
    assert answered is quick
    if not quick and host and "other" in host:
        assert fast.status == 400  # the screen's host mismatch, not a pass


def test_the_usual_shape_is_admitted_on_the_quick_path() -> None:
    req = Request("GET", PATH, headers={"host": "127.0.0.1:8000", "apikey": WEB_KEY},
                  host="127.0.0.1:8000", authority="127.0.0.1", target=PATH, normalized=True)
    fast, _, answered = served(example_config(), req)
    assert answered and fast.allowed and fast.operation_id == "getFlight"


HOSTS = st.text(alphabet="aZ.-:@[] 9\u00b2", max_size=12)


@given(HOSTS, HOSTS)
def test_port_shortcut_agrees_with_host_key(authority: str, rest: str) -> None:
    # _port_of may only say "same host" where the screen's host_key comparison says so too.
    for host in (authority + rest, authority + ":" + rest, rest):
        if _port_of(authority, host):
            assert host_key(authority) == host_key(host), (authority, host)
