"""Keys never leak: not in the server's logs, not in answers, not in CLI output (but keygen);
and rejecting an unknown key takes no usably different time from a known one."""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kong_ace import Enforcer, Request
from kong_ace.testing import KongNode, KongRequest, PluginServerProcess

from ..conftest import WEB_KEY
from .catalog import KEYS, hardening_config
from .conftest import Redis, scale

UNKNOWN = "hk_unknown_Pq8wZr2Lm5Nx7Vb3Jk"  # a client's key we do not know is a secret too
NEAR = KEYS["basic"][:-1] + ("a" if KEYS["basic"][-1] != "a" else "b")  # differs in one char
SECRETS = [*KEYS.values(), UNKNOWN, NEAR]
ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("kong-ace"))


def _leaks(text: str, secrets: list[str]) -> list[str]:
    # The whole key, or a 12-character piece of it, would be a leak.
    return [s for s in secrets if s in text or s[:12] in text or s[-12:] in text]


def test_keys_never_reach_the_server_log_or_answers(redis_proc: Redis) -> None:
    cfg = hardening_config(rate_limiting={"sync_rate": 0, "fault_tolerant": True,
                                          "redis": redis_proc.settings(200)})
    cfg["packages"][0]["rate_limits"] = [{"limit": 3, "duration": "minutes"}]
    strict = copy.deepcopy(cfg)
    strict["rate_limiting"]["fault_tolerant"] = False
    answers_pool = [{}, {"kong.request.get_headers": None}, {"kong.client.get_consumer": [1]},
                    {"kong.nginx.get_var": 7}, {"kong.service.request.set_headers": "x"},
                    {"kong.request.get_headers": {"apikey": [KEYS["basic"], {"x": 1}]}},
                    # Header maps Kong never sends: the adapter fails (a 500), key in hand.
                    {"kong.request.get_headers": {1: "x", "apikey": KEYS["basic"]}},
                    {"kong.request.get_headers": ["apikey", KEYS["api"]]}]
    with PluginServerProcess(args=("-vv", "--event-timeout", "10")) as srv:
        nodes = [KongNode(srv.socket, cfg), KongNode(srv.socket, strict)]
        seen: set[int] = set()

        @settings(max_examples=scale(200, 3000), deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), database=None)
        @given(st.sampled_from(SECRETS + [KEYS["basic"] + "\udcff"]),
               st.sampled_from(["header", "query", "both", "two"]),
               st.sampled_from(["/flights/v1/flights", "/bookings/v2/bookings",
                                "/flights/v1/%ff/..", "/nope"]),
               st.sampled_from(answers_pool), st.integers(0, 1), st.integers(0, 30))
        def prop(key: str, where: str, path: str, answers: dict[str, Any], n: int,
                 outage: int) -> None:
            if outage == 0 and redis_proc.proc is not None:
                redis_proc.stop()  # log lines about the store come with keys nearby
            elif outage == 1 and redis_proc.proc is None:
                redis_proc.start()
            headers: dict[str, Any] = {}
            if where in ("header", "both"):
                headers["apikey"] = key.encode("utf-8", "surrogateescape")
            if where == "two":
                headers["apikey"] = [key.encode("utf-8", "surrogateescape"), UNKNOWN]
            q = quote(key, safe="", errors="surrogateescape")
            target = path + (f"?apikey={q}" if where in ("query", "both") else "")
            r = nodes[n].request(KongRequest(path=target, headers=headers, answers=answers))
            seen.add(r.status)
            answer = json.dumps([r.body, r.headers], default=repr)
            assert not _leaks(answer, SECRETS), answer

        prop()
        if redis_proc.proc is None:
            redis_proc.start()
        for n in nodes:
            n.close()
        log = srv.log
    assert {200, 401, 500} <= seen, seen
    assert "rate-limit store unavailable" in log  # the outage was logged...
    assert "internal error" in log  # ...and so were the internal errors
    assert not _leaks(log, SECRETS), _leaks(log, SECRETS)


def _cli(*args: str, stdin: str | None = None) -> str:
    out = subprocess.run([CLI, *args], input=stdin, capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"})
    return out.stdout + out.stderr


def test_cli_never_prints_a_key_except_keygen() -> None:
    yml = str(ROOT / "kong.yml")
    specs = str(ROOT / "specs")
    outputs = []
    for key in (WEB_KEY, UNKNOWN, WEB_KEY[:-1] + "x"):
        for extra in ((), ("--json",)):
            outputs.append(_cli("explain", yml, "GET", "/flights/v1/flights", "-H",
                                f"apikey: {key}", "--specs-dir", specs, *extra))
            outputs.append(_cli("explain", yml, "GET", "/flights/v1/flights", "--query",
                                f"apikey={key}", "--specs-dir", specs, *extra))
            outputs.append(_cli("explain", yml, "GET", "/flights/v1/flights", "-H",
                                f"apikey: {key}", "-H", f"apikey: {UNKNOWN}", "--specs-dir",
                                specs, *extra))
            outputs.append(_cli("hash-key", *extra, stdin=key + "\n"))
    outputs.append(_cli("check", yml, "--specs-dir", specs))
    for text in outputs:
        assert not _leaks(text, [WEB_KEY, UNKNOWN, WEB_KEY[:-1] + "x"]), text
    assert any("Unauthorized" in t for t in outputs)  # the commands did run
    generated = _cli("keygen")
    assert "sha256:" in generated  # keygen is the one command that shows a key


def _median_ns(fn: Any, rounds: int, batch: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter_ns() - t0) / batch)
    return samples


def _compare(variants: dict[str, Any], rounds: int, batch: int) -> dict[str, float]:
    """Interleaved rounds (ABCABC...), so drift and noise hit every variant alike."""
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            samples[name] += _median_ns(fn, 1, batch)
    return {k: statistics.median(v) for k, v in samples.items()}


TIMING_REPORT = os.environ.get("KONG_ACE_TIMING_REPORT", os.devnull)


def test_unknown_and_known_keys_take_the_same_time_in_the_core() -> None:
    enf = Enforcer(hardening_config())
    path = "/flights/v1/flights"

    def req(key: str) -> Any:
        r = Request("GET", path, headers={"apikey": key})
        return lambda: enf.decide(r)

    assert enf.decide(Request("GET", path, headers={"apikey": UNKNOWN})).status == 401
    assert enf.decide(Request("GET", path, headers={"apikey": KEYS["none"]})).status == 403
    med = _compare({"unknown": req(UNKNOWN), "near-miss": req(NEAR),
                    "known, not registered": req(KEYS["none"]),
                    "known, revoked": req(KEYS["revoked"])},
                   rounds=scale(200, 2000), batch=50)
    report = "core decide() medians (ns): " + ", ".join(f"{k} {v:.0f}" for k, v in med.items())
    print(report)
    with open(TIMING_REPORT, "a") as f:
        f.write(report + "\n")
    # A lookup by hash: a key one character from a real one costs what any unknown key costs.
    assert 0.5 < med["near-miss"] / med["unknown"] < 2.0, report
    assert 0.33 < med["known, not registered"] / med["unknown"] < 3.0, report


def test_unknown_and_known_keys_take_the_same_time_through_the_server(
        plugin_server: PluginServerProcess) -> None:
    node = KongNode(plugin_server.socket, hardening_config(), workers=1)
    path = "/flights/v1/flights"

    def req(key: str) -> Any:
        r = KongRequest(path=path, headers={"apikey": key})
        return lambda: node.request(r)

    assert node.request(KongRequest(path=path, headers={"apikey": UNKNOWN})).status == 401
    assert node.request(KongRequest(path=path, headers={"apikey": KEYS["none"]})).status == 403
    med = _compare({"unknown": req(UNKNOWN), "near-miss": req(NEAR),
                    "known, not registered": req(KEYS["none"])},
                   rounds=scale(100, 1000), batch=5)
    node.close()
    report = "round trip through the server, medians (ns): " + ", ".join(
        f"{k} {v:.0f}" for k, v in med.items())
    print(report)
    with open(TIMING_REPORT, "a") as f:
        f.write(report + "\n")
    assert 0.5 < med["near-miss"] / med["unknown"] < 2.0, report
    assert 0.5 < med["known, not registered"] / med["unknown"] < 2.0, report
