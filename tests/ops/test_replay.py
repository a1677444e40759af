"""kong-ace replay: recorded Kong log records re-decided under an edited config."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from tests.conftest import WEB_KEY
from tests.ops.helpers import ace_plugin, as_json, kong_ace, write_deck

T0 = 1_780_000_000_000  # ms, as Kong's started_at
FLIGHTS = "/flights/v1/flights"


def record(uri: str, ace: dict[str, Any] | None, *, at: int = T0, method: str = "GET",
           headers: dict[str, Any] | None = None, consumer: dict | None = None) -> dict:
    """A record as Kong's file-log writes it (kong/pdk/log.lua serialize), trimmed."""
    rec: dict[str, Any] = {
        "request": {"method": method, "uri": uri, "url": f"http://kong:8000{uri}",
                    "headers": {"host": "api.example.com", **(headers or {})},
                    "querystring": {}, "size": 100},
        "response": {"status": 200, "headers": {}, "size": 10},
        "started_at": at, "client_ip": "127.0.0.1", "upstream_uri": uri,
        "service": {"id": "s1", "name": "flights"}, "route": {"id": "r1", "name": "flights"},
    }
    if ace is not None:
        rec["ace"] = ace
    if consumer is not None:
        rec["consumer"] = consumer
    return rec


def web(uri: str = FLIGHTS, at: int = T0, op: str = "listFlights", **kw: Any) -> dict:
    return record(uri, {"outcome": "allowed", "reason": "allowed", "operation": op,
                        "application": "web-app", "package": "flights-basic"},
                  at=at, headers={"apikey": WEB_KEY}, **kw)


def write_log(path: Path, records: list[Any], compress: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def replay(tmp_path: Path, records: list[Any], edit=None, *extra: str, compress=False):
    log = write_log(tmp_path / ("access.log.gz" if compress else "access.log"), records,
                    compress)
    new = write_deck(tmp_path, edit)
    proc = kong_ace("replay", "--config", str(new), str(log), "--json", *extra)
    assert proc.returncode in (0, 1), proc.stderr + proc.stdout
    return proc.returncode, as_json(proc)


def changes(report: dict) -> dict[tuple[str, str, str, str], int]:
    return {(c["application"], c["operation"], c["from"], c["to"]): c["count"]
            for c in report["changes"]}


def unregister_web_app(data: dict) -> None:
    app = next(a for a in ace_plugin(data)["config"]["applications"] if a["id"] == "web-app")
    app["registrations"] = []


def test_unchanged_config_changes_nothing(tmp_path: Path) -> None:
    code, report = replay(tmp_path, [web(at=T0 + i * 1000) for i in range(3)])
    assert code == 0 and report["changes"] == []
    assert report["totals"]["decided"] == report["totals"]["unchanged"] == 3


def test_a_removed_registration_refuses_what_was_admitted(tmp_path: Path) -> None:
    code, report = replay(tmp_path, [web(f"{FLIGHTS}?apikey={WEB_KEY}&from=LHR")] * 2,
                          unregister_web_app)
    assert code == 1
    assert changes(report) == {("web-app", "listFlights", "200", "403"): 2}
    example = report["changes"][0]["examples"][0]
    assert example == {"file": str(tmp_path / "access.log"), "line": 1,
                       "time": "2026-05-28T20:26:40.000Z", "method": "GET",
                       "uri": f"{FLIGHTS}?apikey=REDACTED&from=LHR"}
    assert report["totals"]["admitted_now_refused"] == 2
    assert WEB_KEY not in json.dumps(report)


def test_rate_limits_replay_at_the_time_of_each_record(tmp_path: Path) -> None:
    def tighten(data: dict) -> None:
        pkg = ace_plugin(data)["config"]["packages"][0]  # flights-basic
        pkg["rate_limits"] = [{"limit": 2, "duration": "minutes"}]
        ace_plugin(data)["config"]["rate_limiting"]["window_type"] = "fixed"

    burst = [web(at=T0 + i * 100) for i in range(5)]  # five in half a second
    spread = [web(at=T0 + 600_000 + i * 60_000) for i in range(5)]  # one a minute
    code, report = replay(tmp_path, burst + spread, tighten)
    assert code == 1
    assert changes(report) == {("web-app", "listFlights", "200", "429"): 3}
    assert [e["line"] for e in report["changes"][0]["examples"]] == [3, 4, 5]


def test_no_operation_now_matched(tmp_path: Path) -> None:
    # Logged under match_policy required: 404; the new config lets unmatched requests pass.
    rec = record("/elsewhere", {"outcome": "denied", "status": 404, "reason": "no_operation"})

    def if_present(data: dict) -> None:
        ace_plugin(data)["config"]["match_policy"] = "if_present"

    code, report = replay(tmp_path, [rec], if_present)
    assert code == 0  # nothing admitted is refused
    assert changes(report) == {("(none)", "(no operation)", "404", "200"): 1}


def test_plaintext_keys_in_the_log_never_authenticate(tmp_path: Path) -> None:
    # The summary names no application (the log says 401): the key the log holds is ignored.
    rec = record(FLIGHTS, {"outcome": "denied", "status": 401, "reason": "unknown_key",
                           "operation": "listFlights"}, headers={"apikey": WEB_KEY})
    code, report = replay(tmp_path, [rec])
    assert code == 0 and report["changes"] == []


def test_monitor_mode_config_lets_through_what_enforce_refuses(tmp_path: Path) -> None:
    def monitor(data: dict) -> None:
        unregister_web_app(data)
        ace_plugin(data)["config"]["enforcement"] = "monitor"

    code, report = replay(tmp_path, [web()], monitor)
    assert code == 0
    assert changes(report) == {("web-app", "listFlights", "200", "(403)"): 1}


def test_malformed_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    lines = [web(), "{not json", '{"request": 5}', "", web(), "[1, 2"]
    code, report = replay(tmp_path, lines, unregister_web_app)
    assert code == 1
    assert report["totals"]["malformed"] == 3
    assert [(m["line"], m["error"].split(":")[0]) for m in report["malformed_lines"]] == [
        (2, "not JSON"), (3, "not a Kong log record (needs request.method, request.uri and "
                             "started_at)"), (6, "not JSON")]
    assert changes(report) == {("web-app", "listFlights", "200", "403"): 2}


def test_gzip_logs_and_http_log_batches(tmp_path: Path) -> None:
    code, report = replay(tmp_path, [[web(), web()], web()], unregister_web_app, compress=True)
    assert code == 1 and changes(report) == {("web-app", "listFlights", "200", "403"): 3}


def test_records_without_a_summary_are_counted_not_guessed(tmp_path: Path) -> None:
    code, report = replay(tmp_path, [record(FLIGHTS, None), web()], unregister_web_app)
    assert report["totals"]["no_summary"] == 1 and report["totals"]["decided"] == 1
    assert report["no_summary_examples"][0]["line"] == 1


def test_baseline_redecides_both_sides(tmp_path: Path) -> None:
    # The log says 403 (it was), but the baseline config admits: compared with the baseline.
    rec = record(FLIGHTS, {"outcome": "denied", "status": 403, "reason": "not_registered",
                           "operation": "listFlights", "application": "web-app"})
    (tmp_path / "old").mkdir()
    old = write_deck(tmp_path / "old")  # the example config, unedited
    code, report = replay(tmp_path, [rec], unregister_web_app, "--baseline", str(old))
    assert code == 1
    assert changes(report) == {("web-app", "listFlights", "200", "403"): 1}
    code, report = replay(tmp_path, [rec], unregister_web_app)  # the logged outcome: no change
    assert code == 0 and report["changes"] == []


def test_consumer_of_another_auth_plugin_is_the_caller(tmp_path: Path) -> None:
    # mobile-app is Kong consumer "mobile" (key-auth); the summary names it, Kong's record too.
    rec = record("/bookings/v2/bookings", {"outcome": "allowed", "reason": "allowed",
                                           "operation": "listBookings",
                                           "application": "mobile-app"},
                 consumer={"id": "c-1", "username": "mobile"})

    def revoke(data: dict) -> None:
        app = next(a for a in ace_plugin(data)["config"]["applications"]
                   if a["id"] == "mobile-app")
        app["registrations"][0]["status"] = "revoked"

    code, report = replay(tmp_path, [rec], revoke)
    assert changes(report) == {("mobile-app", "listBookings", "200", "403"): 1}


def test_text_report_names_changes_and_totals(tmp_path: Path) -> None:
    log = write_log(tmp_path / "a.log", [web(), "oops"])
    proc = kong_ace("replay", "--config", str(write_deck(tmp_path, unregister_web_app)), str(log))
    assert proc.returncode == 1
    out = proc.stdout
    assert "web-app" in out and "200 -> 403" in out and "listFlights" in out
    assert "totals: 1 decided, 0 unchanged, 1 changed (200 -> 403: 1)" in out
    assert f"1 malformed line(s) skipped: {log}:2 (not JSON" in out


def test_bad_config_and_missing_log_exit_2(tmp_path: Path) -> None:
    proc = kong_ace("replay", "--config", str(tmp_path / "nope.yml"), str(tmp_path / "x.log"))
    assert proc.returncode == 2 and "error:" in proc.stderr
    log = write_log(tmp_path / "a.log", [web()])
    proc = kong_ace("replay", "--config", str(write_deck(tmp_path)), str(log),
                    str(tmp_path / "missing.log"))
    assert proc.returncode == 2 and "missing.log: no such log file" in proc.stderr


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    log = write_log(tmp_path / "a.log", [web(at=T0 + i * 1000) for i in range(50)])
    deck = write_deck(tmp_path)
    args = [sys.executable, "-m", "kong_ace.ops.cli", "replay", "--config", str(deck), str(log)]
    piped = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and "replaying" not in piped.stderr
    main, child = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=child,
                            env={**os.environ, "TERM": "xterm"})
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=60) == 0
    assert b"replaying" in seen
