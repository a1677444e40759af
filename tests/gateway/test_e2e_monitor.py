"""Monitor mode and API lifecycle through the real plugin server, classic and companion modes.

Every denial reason becomes a proxied request whose would-be outcome is in the log summary, the
metrics and (opted in) the upstream header; switching to enforce changes nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import pytest

from kong_ace.testing import KongNode, PluginServerProcess
from tests.gateway.scrape import delta, labels, metrics_server, scrape
from tests.gateway.support import DENIALS, get, node_in, outcomes_config

FLIGHTS = "/flights/v1/flights"
BOOKINGS = "/bookings/v2/bookings"
SEATS = "/flights/v1/flights/BA1/seats"
IDENTITY = ("X-ACE-Operation-ID", "X-ACE-Application-ID", "X-ACE-Package", "X-ACE-API")



def config(enforcement: str) -> dict:
    c = outcomes_config(enforcement=enforcement, monitor_header=True, log_summary=True,
                        monitor_request_confusion=False)
    c["applications"] = [a for a in c["applications"] if not a.get("consumer")]
    return c


@pytest.fixture(scope="module")
def server(kong_mode: str) -> Iterator[PluginServerProcess]:
    with metrics_server() as srv:
        yield srv


@pytest.fixture
def nodes(server: PluginServerProcess, kong_mode: str) -> Iterator[dict[str, KongNode]]:
    made = {e: node_in(kong_mode, server.socket, config(e), workers=1)
            for e in ("enforce", "monitor")}
    yield made
    for n in made.values():
        n.close()


@pytest.mark.parametrize(("path", "key", "method", "status", "reason", "op", "app"), DENIALS)
def test_every_denial_is_proxied_with_its_would_be_outcome(
        server: PluginServerProcess, nodes: dict[str, KongNode], kong_mode: str, path: str,
        key: str | None, method: str, status: int, reason: str, op: str | None,
        app: str | None) -> None:
    port = server.metrics_port  # type: ignore[attr-defined]
    enforced = get(nodes["enforce"], path, key, method=method)
    assert (enforced.status, enforced.proxied) == (status, False)
    before = scrape(port)
    r = get(nodes["monitor"], path, key, method=method,
            headers={"X-ACE-Would-Deny": "forged", "X-ACE-Application-ID": "forged"})
    assert (r.status, r.proxied, r.errors) == (200, True, [])
    assert r.upstream("X-ACE-Would-Deny") == f"{status} {reason}"
    assert [r.upstream(h) for h in IDENTITY] == [None] * 4
    summary = {"outcome": "would_deny", "status": status, "reason": reason}
    summary.update({k: v for k, v in (("operation", op), ("application", app)) if v})
    api = ("bookings" if "bookings" in path else "flights") if op else ""
    if api and kong_mode == "classic":  # the companions' summary names no API of a denial
        summary["api"] = api
    assert r.serialized == {"ace": summary}
    assert enforced.serialized == {"ace": {**summary, "outcome": "denied"}}
    after = scrape(port)
    assert delta(before, after, "kong_ace_would_deny_total") == {
        labels(status=str(status), reason=reason, api=api, operation=op or ""): 1}
    assert delta(before, after, "kong_ace_decisions_total") == {
        labels(status="proxied", reason="would_deny", package="", api=api,
               operation=op or ""): 1}


def test_admitted_requests_are_identical_in_both_modes(nodes: dict[str, KongNode]) -> None:
    # One process, one set of counters: the second request has one less left.
    seen, left = [], []
    for mode in ("enforce", "monitor"):
        r = get(nodes[mode], f"{FLIGHTS}?from=LHR", "good")
        left.append((int(r.headers["RateLimit-Remaining"]), r.serialized["ace"].pop("remaining")))
        seen.append((r.status, r.proxied, r.serialized, [r.upstream(h) for h in IDENTITY],
                     r.upstream("X-ACE-Would-Deny"), r.upstream("apikey")))
    assert seen[0] == seen[1]
    assert seen[0][3][:3] == ["listFlights", "good", "basic"]
    assert left[1] == (left[0][0] - 1, left[0][1] - 1)


def test_rate_limit_counters_still_count(nodes: dict[str, KongNode]) -> None:
    statuses = [get(nodes["monitor"], SEATS, "good").status for _ in range(3)]
    r = get(nodes["monitor"], SEATS, "good")
    assert statuses == [200, 200, 200] and r.status == 200
    assert r.serialized["ace"]["outcome"] == "would_deny"
    assert r.serialized["ace"]["reason"] == "limited" and r.serialized["ace"]["remaining"] == 0
    assert "Retry-After" not in r.headers  # the client sees no denial


def test_lifecycle_headers_and_410_reach_the_client(server: PluginServerProcess,
                                                    kong_mode: str) -> None:
    c = outcomes_config(log_summary=True)
    c["applications"] = [a for a in c["applications"] if not a.get("consumer")]
    c["apis"][0].update(deprecated="2026-01-01", deprecation_link="https://dev.example/v2",
                        sunset="2026-02-01", sunset_action="refuse")  # long past
    c["apis"][1].update(deprecated="2030-01-01", sunset="2031-01-01")  # ahead
    port = server.metrics_port  # type: ignore[attr-defined]
    node = node_in(kong_mode, server.socket, c, workers=1)
    try:
        before = scrape(port)
        gone = get(node, FLIGHTS, "good")
        assert (gone.status, gone.body) == (410, {"message": "this API version has been retired"})
        assert gone.headers["Deprecation"] == "@1767225600"
        assert gone.headers["Link"] == '<https://dev.example/v2>; rel="deprecation"'
        assert gone.headers["Sunset"] == "Sun, 01 Feb 2026 00:00:00 GMT"
        assert gone.serialized["ace"]["reason"] == "sunset"
        ok = get(node, BOOKINGS, "pending")
        assert ok.status == 403 and ok.headers["Deprecation"] == "@1893456000"
        assert parsedate_to_datetime(ok.headers["Sunset"]).year == 2031
        assert delta(before, scrape(port), "kong_ace_deprecated_calls_total") == {
            labels(api="flights", package=""): 1, labels(api="bookings", package=""): 1}
    finally:
        node.close()


def test_admitted_call_to_a_deprecated_api_counts_its_package(
        server: PluginServerProcess, kong_mode: str) -> None:
    c = outcomes_config()
    c["applications"] = [a for a in c["applications"] if not a.get("consumer")]
    c["apis"][0]["deprecated"] = True
    port = server.metrics_port  # type: ignore[attr-defined]
    node = node_in(kong_mode, server.socket, c, workers=1)
    try:
        before = scrape(port)
        r = get(node, FLIGHTS, "good")
        assert r.status == 200 and r.headers["Deprecation"] == "@0"
        assert delta(before, scrape(port), "kong_ace_deprecated_calls_total") == {
            labels(api="flights", package="basic"): 1}
    finally:
        node.close()
