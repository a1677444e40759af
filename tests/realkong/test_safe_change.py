"""Monitor mode, replay and API lifecycle through a real Kong 3.9.1 (both modes).

- Monitor: every denial reason becomes a proxied request; the would-be outcome is in the
  file-log record (Kong's own serializer) and the metric; the same config in enforce answers
  exactly those requests and changes nothing else.
- Replay: traffic recorded by Kong's file-log, replayed against an edited config, gives exactly
  the changes the edit implies.
- Lifecycle: Deprecation / Link / Sunset in the RFC formats on what the client gets, 410 after a
  sunset.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gateway.scrape import delta, free_port, labels, scrape
from tests.gateway.support import DENIALS, KEYS, SPECS, outcomes_config
from tests.realkong.kong import KongNode, Upstream, ace_config, header

FLIGHTS = "/flights/v1/flights"
BOOKINGS = "/bookings/v2/bookings"
SEATS = "/flights/v1/flights/BA1/seats"
IDENTITY = ("X-ACE-Operation-ID", "X-ACE-Application-ID", "X-ACE-Package", "X-ACE-API")



PROBE_HOSTS = ".kong-ace.invalid"  # post_config's probe requests (tests/realkong/kong.py)
METRICS_PORT: dict[str, int] = {}


@pytest.fixture(scope="module", params=["companion", "classic"])
def node(request: pytest.FixtureRequest, kong_node: Callable[..., KongNode],
         upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KongNode]:
    """One Kong per mode for the module, with metrics; each test posts its own config."""
    mode = request.param
    port = METRICS_PORT[mode] = free_port()
    log = tmp_path_factory.mktemp("start") / "ace.log"
    yield kong_node(declarative(upstream, ace(), log), mode=mode,
                    server_args=["--metrics-listen", f"127.0.0.1:{port}"])


def ace(**overrides: Any) -> dict[str, Any]:
    c = outcomes_config(log_summary=True, **overrides)
    c["applications"] = [a for a in c["applications"] if not a.get("consumer")]
    return c


def declarative(upstream: Upstream, config: dict[str, Any], log: Path) -> dict[str, Any]:
    return ace_config(upstream.url, config, extra_plugins=[
        {"name": "file-log", "config": {"path": str(log), "reopen": True}}])


def send(node: KongNode, path: str, key: str | None = None, method: str = "GET",
         headers: dict[str, str] | None = None) -> Any:
    h = dict(headers or {})
    if key is not None:
        h["apikey"] = KEYS.get(key, key)
    return node.request(method, path, h)


def records(log: Path, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The file-log records once there are ``n`` of them (Kong writes in the log phase).

    Records of post_config's probe requests are dropped, from the file too (replay reads it).
    """
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        found = [json.loads(line) for line in lines]
        found = [r for r in found
                 if not r["request"]["headers"].get("host", "").endswith(PROBE_HOSTS)]
        if len(found) >= n or time.monotonic() > deadline:
            log.write_text("".join(json.dumps(r) + "\n" for r in found))
            return found
        time.sleep(0.05)


def use(node: KongNode, upstream: Upstream, config: dict[str, Any], log: Path) -> KongNode:
    """Post ``config`` (with file-log to ``log``) and wait until every worker serves it."""
    status, body = node.post_config(declarative(upstream, config, log))
    assert status in (200, 201), body
    return node


def test_monitor_mode_proxies_every_denial_with_its_would_be_outcome(
        node: KongNode, upstream: Upstream, tmp_path: Path) -> None:
    port = METRICS_PORT[node.mode]
    log = tmp_path / "ace.log"
    use(node, upstream, ace(enforcement="monitor", monitor_header=True), log)
    seen: list[tuple[Any, ...]] = []
    for path, key, method, status, reason, op, app in DENIALS:
        upstream.clear()
        before = scrape(port)
        r = send(node, path, key, method, {"X-ACE-Would-Deny": "forged",
                                           "X-ACE-Application-ID": "forged"})
        assert r.status == 200, (path, key, r.status, r.body)
        (got,) = upstream.received
        assert header(got, "X-ACE-Would-Deny") == [f"{status} {reason}"]
        assert [header(got, h) for h in IDENTITY] == [[]] * 4
        after = scrape(port)
        api = ("bookings" if "bookings" in path else "flights") if op else ""
        assert delta(before, after, "kong_ace_would_deny_total") == {
            labels(status=str(status), reason=reason, api=api, operation=op or ""): 1}
        seen.append((status, reason, op, app))
    logged = records(log, len(DENIALS))
    assert len(logged) == len(DENIALS)
    for rec, (status, reason, op, app) in zip(logged, seen, strict=True):
        summary = rec["ace"]
        assert (summary["outcome"], summary["status"], summary["reason"]) == (
            "would_deny", status, reason)
        assert summary.get("operation") == op and summary.get("application") == app
        assert rec["response"]["status"] == 200 and "consumer" not in rec

    # Switching to enforce answers exactly those requests, with the would-be status.
    use(node, upstream, ace(enforcement="enforce", monitor_header=True), log)
    for path, key, method, status, _, _, _ in DENIALS:
        upstream.clear()
        assert send(node, path, key, method).status == status
        assert upstream.received == []


def test_admitted_requests_are_the_same_in_both_modes(
        node: KongNode, upstream: Upstream, tmp_path: Path) -> None:
    got, left = [], []
    for enforcement in ("enforce", "monitor"):
        use(node, upstream, ace(enforcement=enforcement, monitor_header=True),
            tmp_path / f"{enforcement}.log")
        upstream.clear()
        r = send(node, f"{FLIGHTS}?from=LHR", "good", headers={"X-ACE-API": "forged"})
        (seen,) = upstream.received
        left.append(int(r.headers["RateLimit-Remaining"]))  # one server: one set of counters
        got.append((r.status, r.headers.get("RateLimit-Limit"), seen["target"],
                    [header(seen, h) for h in (*IDENTITY, "X-ACE-Would-Deny", "apikey")]))
    assert got[0] == got[1] and left[1] == left[0] - 1
    assert got[0][3][:3] == [["listFlights"], ["good"], ["basic"]]


def test_replay_of_a_recorded_log_gives_exactly_the_edits_changes(
        node: KongNode, upstream: Upstream, tmp_path: Path) -> None:
    log = tmp_path / "ace.log"
    old = ace()
    use(node, upstream, old, log)
    traffic = ([(FLIGHTS, "good")] * 3 + [(SEATS, "good")] * 2 + [(BOOKINGS, "pending")]
               + [(FLIGHTS, None), ("/nowhere", "good"), (FLIGHTS, "unregistered")])
    statuses = [send(node, path, key).status for path, key in traffic]
    assert statuses == [200, 200, 200, 200, 200, 403, 401, 404, 403]
    assert len(records(log, len(traffic))) == len(traffic)

    # The edit: "good" leaves the basic package's listSeats (a limit of 1 a minute instead of
    # 2), "unregistered" joins basic, "pending" is approved, match_policy if_present.
    new = copy.deepcopy(old)
    basic = new["packages"][0]
    basic["operations"][2]["rate_limits"] = [{"limit": 1, "duration": "minutes"}]
    next(a for a in new["applications"] if a["id"] == "unregistered")["registrations"] = [
        {"package": "basic", "status": "approved"}]
    next(a for a in new["applications"] if a["id"] == "pending")["registrations"][0][
        "status"] = "approved"
    new["match_policy"] = "if_present"
    deck = tmp_path / "new.yml"
    deck.write_text(yaml.safe_dump(ace_config(upstream.url, new)))
    proc = subprocess.run([sys.executable, "-m", "kong_ace.ops.cli", "replay", "--config",
                           str(deck), "--specs-dir", str(SPECS), str(log), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # a request that went upstream would be 429
    report = json.loads(proc.stdout)
    assert {(c["application"], c["operation"], c["from"], c["to"]): c["count"]
            for c in report["changes"]} == {
        ("good", "listSeats", "200", "429"): 1,
        ("pending", "listBookings", "403", "200"): 1,
        ("unregistered", "listFlights", "403", "200"): 1,
        ("(none)", "(no operation)", "404", "200"): 1,
    }
    totals = report["totals"]
    assert (totals["records"], totals["decided"], totals["no_summary"], totals["malformed"]) \
        == (9, 9, 0, 0)
    assert KEYS["good"] not in proc.stdout


def test_lifecycle_headers_in_rfc_formats_and_410_after_sunset(
        node: KongNode, upstream: Upstream, tmp_path: Path) -> None:
    config = ace()
    config["apis"][0].update(deprecated="2026-01-01T00:00:00Z", sunset="2026-02-01",
                             deprecation_link="https://dev.example.com/flights-v2",
                             sunset_action="refuse")  # sunset long past: 410
    config["apis"][1].update(deprecated="2030-01-01", sunset="2031-01-01")  # ahead: headers
    use(node, upstream, config, tmp_path / "ace.log")
    upstream.clear()
    gone = send(node, FLIGHTS, "good")
    assert (gone.status, gone.json) == (410, {"message": "this API version has been retired"})
    assert upstream.received == []
    assert re.fullmatch(r"@-?[0-9]{1,15}", gone.headers["Deprecation"])  # RFC 9651 sf-date
    assert gone.headers["Deprecation"] == "@1767225600"
    assert gone.headers["Link"] == '<https://dev.example.com/flights-v2>; rel="deprecation"'
    assert gone.headers["Sunset"] == "Sun, 01 Feb 2026 00:00:00 GMT"  # RFC 8594 IMF-fixdate
    ok = send(node, BOOKINGS, "good")
    assert ok.status == 403  # "good" is not registered to bookings: a denial carries them too
    assert ok.headers["Deprecation"] == "@1893456000"
    assert parsedate_to_datetime(ok.headers["Sunset"]).isoformat() == "2031-01-01T00:00:00+00:00"
    assert ok.headers.get_all("Deprecation") == ["@1893456000"]


def test_lifecycle_headers_on_a_proxied_response(
        node: KongNode, upstream: Upstream, tmp_path: Path) -> None:
    config = ace()
    config["apis"][0]["deprecated"] = "2030-01-01"
    use(node, upstream, config, tmp_path / "ace.log")
    upstream.clear()
    r = send(node, FLIGHTS, "good")
    assert r.status == 200 and len(upstream.received) == 1
    assert r.headers.get_all("Deprecation") == ["@1893456000"]
    assert "Link" not in r.headers and "Sunset" not in r.headers
