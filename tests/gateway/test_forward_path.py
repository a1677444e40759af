"""Unescaped paths on routes that rewrote the upstream path (path_with_escaped_slashes_action)."""

from __future__ import annotations

from typing import Any

from kong_ace.gateway.plugin import _forward_path
from kong_ace.gateway.request_line import kong_escape


class _Kong:
    """Just enough of the PDK: $upstream_uri, set_path, response.exit."""

    def __init__(self, upstream_uri: str) -> None:
        self.upstream_uri = upstream_uri
        self.path: str | None = None
        self.exited: tuple[int, Any] | None = None
        kong = self

        class _Nginx:
            @staticmethod
            def get_var(name: str) -> str:
                assert name == "upstream_uri"
                return kong.upstream_uri

        class _Service:
            class request:  # noqa: N801 - the PDK's name
                @staticmethod
                def set_path(path: str) -> None:
                    kong.path = path

        class _Response:
            @staticmethod
            def exit(status: int, body: Any = None, headers: Any = None) -> None:
                kong.exited = (status, body)

        self.nginx, self.service, self.response = _Nginx, _Service, _Response


def test_unrewritten_route_gets_the_decided_path() -> None:
    kong = _Kong(kong_escape("/files/users/a%2F..%2F7"))
    assert not _forward_path(kong, "/files/users/7", "/files/users/a%2f..%2f7")
    assert kong.path == "/files/users/7"


def test_rewritten_route_is_unescaped_the_same_way() -> None:
    # strip_path route /files on a service path /api: Kong forwards /api/users/a%2Fb.
    kong = _Kong("/api/users/a%2Fb")
    assert not _forward_path(kong, "/files/users/a/b", "/files/users/a%2Fb")
    assert kong.path == "/api/users/a/b"


def test_rewritten_route_refuses_a_dot_segment_it_would_bring_back() -> None:
    kong = _Kong("/api/users/a%2F..%2F..%2Fadmin")
    assert _forward_path(kong, "/files/admin", "/files/users/a%2F..%2F..%2Fadmin")
    assert kong.path is None and kong.exited is not None and kong.exited[0] == 400
