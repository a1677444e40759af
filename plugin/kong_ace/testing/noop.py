"""A no-op plugin making the PDK calls of an allowed `ace` request: the benchmark's floor.

It first asks for ace-context's table, as ``ace`` does. Without it (classic mode) it reads
``$request``, the headers and the consumer, then sets one upstream header map and one response
header map, exactly the six round trips of an allowed request with the example ``kong.yml``. A
request carrying ``x-noop-exit: <status>`` ends with ``kong.response.exit`` after the reads
instead (the five calls of a denial); stock kong-pdk never finishes such an event (Kong sends
no Step after exit), so benchmarks send those to our server only. With the table (companion
mode) it writes a fixed verdict: the two calls of every companion-mode request.
"""

from __future__ import annotations

from typing import Any

from kong_ace.gateway.events import last_call

version = "0.0.1"
priority = 955
Schema: list[dict[str, Any]] = []

UPSTREAM = {"X-ACE-Operation-ID": "op", "X-ACE-Application-ID": "app", "X-ACE-Package": "pkg"}
RESPONSE = {"RateLimit-Limit": "5", "RateLimit-Remaining": "4", "RateLimit-Reset": "60"}
BODY = {"message": "denied"}
VERDICT = {"allow": True, "set": UPSTREAM, "response_headers": RESPONSE,
           "summary": {"outcome": "allowed"}}


def _v(result: Any) -> Any:
    # kong-pdk's Lua-style mode answers (data, err); ours answers data.
    return result[0] if type(result) is tuple else result


class Plugin:
    """Does nothing but the PDK calls."""

    first_calls = {"access": ("kong.nginx.get_ctx", ("kong_ace_request",))}  # as ace's

    def __init__(self, config: Any) -> None:
        self.config = config

    def access(self, kong: Any) -> None:
        """Three reads, then two header writes (or an exit); or one read and one write."""
        if _v(kong.nginx.get_ctx("kong_ace_request")) is not None:
            last_call(kong.nginx.set_ctx, "kong_ace_verdict", VERDICT)  # as ace does
            return
        _v(kong.nginx.get_var("request"))
        headers = _v(kong.request.get_headers()) or {}
        _v(kong.client.get_consumer())
        status = headers.get("x-noop-exit")
        if status:
            kong.response.exit(int(status[0] if isinstance(status, list) else status), BODY)
            return
        kong.service.request.set_headers(UPSTREAM)
        kong.response.set_headers(RESPONSE)
