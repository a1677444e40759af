"""Reading method, URI and query from nginx's $request as Kong's PDK would."""

from __future__ import annotations

import pytest

from kong_ace.gateway.request_line import parse_query, parse_request_line, strip_query


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /flights?x=1 HTTP/1.1", ("GET", "/flights?x=1")),
        ("GET /a b HTTP/1.1", ("GET", "/a b")),  # nginx keeps a bare space inside the target
        ("POST  /x  HTTP/1.0", ("POST", "/x")),
        ("GET /flights HTTP/2.0", ("GET", "/flights")),
        ("GET http://api.example.com:80/f/g?q HTTP/1.1", ("GET", "/f/g?q")),
        ("GET http://api.example.com HTTP/1.1", ("GET", "/")),
        ("GET http://api.example.com?q=1 HTTP/1.1", ("GET", "/?q=1")),
        ("OPTIONS * HTTP/1.1", None),  # asked of Kong instead
        ("GET /nohttp", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_request_line(line: object, expected: tuple[str, str] | None) -> None:
    assert parse_request_line(line) == expected


def test_query_as_get_uri_args_via_kong_rpc() -> None:
    assert parse_query("apikey=a%2Bb&apikey=c+d&flag&=x&&e=") == {
        "apikey": ["a+b", "c d"], "flag": [], "e": [""]}


def test_strip_query_keeps_other_arguments_byte_for_byte() -> None:
    assert strip_query("a=%41&apikey=k&b&api%6Bey=k2&c=1", ("apikey",)) == "a=%41&b&c=1"
