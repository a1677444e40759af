"""Prometheus metrics of the real plugin server: a known mix of requests, scraped exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from kong_ace import Enforcer
from kong_ace.gateway.compiled import canonical_config, config_key
from kong_ace.testing import KongNode, KongRPC, PluginServerProcess, Result, RPCFailure
from tests.gateway.scrape import delta, free_port, labels, metrics_server, scrape, scrape_text
from tests.gateway.support import KEYS, get, outcomes_config
from tests.redis_server import RedisServer

FLIGHTS = "/flights/v1/flights"
BOOKINGS = "/bookings/v2/bookings"
SEATS = "/flights/v1/flights/BA1/seats"
DECISIONS = "kong_ace_decisions_total"



@pytest.fixture(scope="module", params=["gevent", "threading"])
def server(request: pytest.FixtureRequest) -> Iterator[PluginServerProcess]:
    with metrics_server("--mode", request.param) as srv:
        yield srv


def d(status: str, reason: str, op: str = "", api: str = "", package: str = ""):
    return labels(status=status, reason=reason, package=package, api=api, operation=op)


def op_id(method: str, path: str) -> str:
    op = Enforcer(outcomes_config()).match(method, path)
    assert op is not None
    return op.id


def test_scraped_counters_equal_the_mix_exactly(server: PluginServerProcess,
                                               redis: RedisServer) -> None:
    port = server.metrics_port  # type: ignore[attr-defined]
    before = scrape(port)
    results: list[Result] = []

    # A: match_policy required, local counters; Kong knows no consumer "mobile".
    a = KongNode(server.socket, outcomes_config(), workers=1)
    hash_a = config_key(canonical_config(a.plugin_conf))

    def send(node: KongNode, path: str, key: str | None = None, **kw) -> Result:
        r = get(node, path, key, **kw)
        results.append(r)
        return r

    assert [send(a, FLIGHTS, "good").status for _ in range(3)] == [200] * 3
    assert [send(a, FLIGHTS).status for _ in range(2)] == [401] * 2
    assert send(a, FLIGHTS, "not-a-key").message == "Unauthorized"
    assert send(a, FLIGHTS, "revoked").message == "API key revoked"
    assert send(a, FLIGHTS, "expired").message == "API key expired"
    assert send(a, f"{FLIGHTS}?apikey={KEYS['pending']}", "good").message == \
        "Duplicate API key found"
    assert send(a, FLIGHTS, "unregistered").status == 403
    assert send(a, BOOKINGS, "pending").message == "registration pending approval"
    assert send(a, BOOKINGS, "rejected").message == "registration rejected"
    assert send(a, BOOKINGS, "regrevoked").message == "registration revoked"
    assert [send(a, SEATS, "good").status for _ in range(3)] == [200, 200, 429]
    assert send(a, "/nowhere", "good").status == 404
    assert send(a, "/flights/v1/airports/JFK", "good", method="DELETE").status == 405
    assert send(a, "/flights/v1/flights%2FBA1", "good").status == 400  # request confusion
    assert send(a, f"{BOOKINGS}/B1", "mobile").status == 500  # consumer unknown to Kong
    assert send(a, FLIGHTS, "good",
                answers={"kong.request.get_headers": ["not", "a", "map"]}).status == 500

    # B: if_present, Redis counters (sync_rate 0), fault_tolerant false; no consumer mapping.
    config_b = outcomes_config(match_policy="if_present", rate_limiting={
        "sync_rate": 0, "redis": redis.settings, "fault_tolerant": False})
    config_b["applications"] = [x for x in config_b["applications"] if not x.get("consumer")]
    b = KongNode(server.socket, config_b, workers=1)
    assert [send(b, FLIGHTS, "good").status for _ in range(2)] == [200, 200]
    assert send(b, "/somewhere/else").proxied
    redis.stop()
    assert send(b, FLIGHTS, "good").status == 500  # the store is down: deny, never pass

    # C: a config the core rejects (Kong's schema would have let it through), no last good one.
    c = KongNode(server.socket, {"apis": [{"name": "x"}]}, workers=1)
    assert c.request(path="/").status == 500  # StartInstance fails: Kong's 500, not counted
    assert send(c, "/").status == 500  # the fail-closed instance answers and counts it
    # A's next config is rejected too: A keeps serving its last good config (and counting).
    a.configure({"apis": [{"name": "y"}]})
    assert send(a, FLIGHTS, "good").status == 200

    after = scrape(port)
    flights, bookings = op_id("GET", FLIGHTS), op_id("GET", BOOKINGS)
    seats, booking = op_id("GET", SEATS), op_id("GET", f"{BOOKINGS}/B1")
    assert delta(before, after, DECISIONS) == Counter({
        d("proxied", "allowed", flights, "flights", "basic"): 3 + 2 + 1,
        d("401", "no_key", flights, "flights"): 2,
        d("401", "unknown_key", flights, "flights"): 1,
        d("401", "revoked", flights, "flights"): 1,
        d("401", "expired", flights, "flights"): 1,
        d("401", "duplicate_key", flights, "flights"): 1,
        d("403", "not_registered", flights, "flights"): 1,
        d("403", "pending", bookings, "bookings"): 1,
        d("403", "rejected", bookings, "bookings"): 1,
        d("403", "registration_revoked", bookings, "bookings"): 1,
        d("proxied", "allowed", seats, "flights", "basic"): 2,
        d("429", "limited", seats, "flights"): 1,
        d("404", "no_operation"): 1,
        d("405", "method_not_allowed"): 1,
        d("400", "escaped_slash"): 1,
        d("500", "consumer_not_found", booking, "bookings", "premium"): 1,
        d("500", "internal_error"): 1,
        d("proxied", "pass_through"): 1,
        d("500", "store_unavailable", flights, "flights"): 1,
        d("500", "config_rejected"): 1,
    })
    decided = len(results)
    assert delta(before, after, "kong_ace_decision_seconds_count") == \
        Counter({labels(): decided})
    # Every PDK call the harness saw (kong.log.err of the internal error included) is counted.
    assert delta(before, after, "kong_ace_pdk_calls_per_request_count") == \
        Counter({labels(): decided})
    assert delta(before, after, "kong_ace_pdk_calls_per_request_sum") == \
        Counter({labels(): sum(len(r.pdk_calls) for r in results)})
    assert delta(before, after, "kong_ace_store_calls_total") == Counter({
        labels(store="redis", op="acquire", outcome="ok"): 2,
        labels(store="redis", op="acquire", outcome="error"): 1,
    })
    assert delta(before, after, "kong_ace_store_seconds_count") == \
        Counter({labels(store="redis", op="acquire"): 3})
    # Each node's one worker runs one instance, of its (last good) config's hash.
    hash_b = config_key(canonical_config(b.plugin_conf))
    rejected = {k[1]: v for k, v in after.items() if k[0] == "kong_ace_config_rejected"}
    assert rejected == {
        labels(plugin_id=c.plugin_id, config_hash=config_key(canonical_config(c.plugin_conf)),
               serving=""): 1,
        labels(plugin_id=a.plugin_id, config_hash=config_key(canonical_config(a.plugin_conf)),
               serving=hash_a): 1,
    }
    assert after[("kong_ace_instances", labels(plugin_id=a.plugin_id, config_hash=hash_a))] >= 1
    assert after[("kong_ace_instances", labels(plugin_id=b.plugin_id, config_hash=hash_b))] == 1
    assert after[("kong_ace_config_compile_seconds", labels(config_hash=hash_a))] > 0
    assert after[("kong_ace_events_in_flight", labels())] == 0
    for node in (a, b, c):
        node.close()


def test_a_config_change_moves_the_plugin_ids_hash(server: PluginServerProcess) -> None:
    port = server.metrics_port  # type: ignore[attr-defined]
    node = KongNode(server.socket, outcomes_config(), workers=2)
    for w in (0, 1):
        get(node, FLIGHTS, "good", worker=w)
    old = config_key(canonical_config(node.plugin_conf))
    held = [k for k in scrape(port) if k[0] == "kong_ace_instances"
            and ("plugin_id", node.plugin_id) in k[1]]
    assert held == [("kong_ace_instances", labels(plugin_id=node.plugin_id, config_hash=old))]
    node.configure(outcomes_config(key_names=["x-key"]))
    for w in (0, 1):
        get(node, FLIGHTS, "good", worker=w)  # each worker starts the new, closes the old
    new = config_key(canonical_config(node.plugin_conf))
    after = scrape(port)
    assert after[("kong_ace_instances", labels(plugin_id=node.plugin_id, config_hash=new))] == 2
    assert after.get(("kong_ace_instances",
                      labels(plugin_id=node.plugin_id, config_hash=old))) is None
    node.close()


def test_labels_stay_bounded_without_the_application_label(
        server: PluginServerProcess) -> None:
    port = server.metrics_port  # type: ignore[attr-defined]
    config = outcomes_config()
    config["applications"] += [
        {"id": f"app-{i}", "credentials": [], "registrations": [
            {"package": "basic", "status": "approved"}], "consumer": f"c{i}"}
        for i in range(40)]
    consumers = [{"id": f"id-{i}", "username": f"c{i}"} for i in range(40)]
    node = KongNode(server.socket, config, workers=1, consumers=consumers)
    before = scrape(port)
    for i in range(40):
        # Authenticated by another auth plugin (with a credential, so ACE trusts it).
        assert get(node, FLIGHTS, consumer=consumers[i], credential={"id": f"cred-{i}"}).status \
            == 200
        assert get(node, FLIGHTS, f"random-key-{i}").status == 401
    changed = delta(before, scrape(port), DECISIONS)
    # 80 requests from 40 applications and 40 unknown keys: two series, no application label.
    assert changed == Counter({
        d("proxied", "allowed", op_id("GET", FLIGHTS), "flights", "basic"): 40,
        d("401", "unknown_key", op_id("GET", FLIGHTS), "flights"): 40,
    })
    node.close()


def test_application_label_when_enabled() -> None:
    with metrics_server("--metrics-applications") as srv:
        node = KongNode(srv.socket, outcomes_config(), workers=1)
        for key in ("good", "good", "unregistered", None):
            get(node, FLIGHTS, key)
        got = delta({}, scrape(srv.metrics_port), DECISIONS)  # type: ignore[attr-defined]
        flights = op_id("GET", FLIGHTS)
        base = {"package": "", "api": "flights", "operation": flights}
        assert got == Counter({
            labels(status="proxied", reason="allowed", **{**base, "package": "basic"},
                   application="good"): 2,
            labels(status="403", reason="not_registered", **base,
                   application="unregistered"): 1,
            labels(status="401", reason="no_key", **base, application=""): 1,
        })
        node.close()


def test_metrics_are_off_by_default() -> None:
    with PluginServerProcess() as srv:
        node = KongNode(srv.socket, outcomes_config(), workers=1)
        assert get(node, FLIGHTS, "good").status == 200
        status = KongRPC(srv.socket).call("plugin.GetStatus")
        assert status["Plugins"]["ace"]["Metrics"] is None
        assert "--metrics" not in " ".join(srv.command)
        node.close()


def test_a_scrape_answers_while_requests_are_served() -> None:
    with metrics_server() as srv:
        node = KongNode(srv.socket, outcomes_config(), workers=1)
        for _ in range(20):
            assert get(node, FLIGHTS, "good").status == 200
            assert "kong_ace_decisions_total" in scrape_text(srv.metrics_port)  # type: ignore
        node.close()


@pytest.mark.parametrize("address", ["0.0.0.0:{port}", "192.0.2.1:{port}", "example.com:{port}"])
def test_a_non_loopback_listener_is_refused(address: str) -> None:
    srv = PluginServerProcess(args=("--metrics-listen", address.format(port=free_port())))
    with pytest.raises(RuntimeError, match="not a loopback address"):
        srv.start()
    srv.stop()


def test_a_remote_listener_needs_the_explicit_flag() -> None:
    port = free_port()
    with PluginServerProcess(args=("--metrics-listen", f"0.0.0.0:{port}",
                                   "--metrics-allow-remote")):
        assert "kong_ace_decisions_total" in scrape_text(port)


def test_the_env_var_turns_metrics_on_for_the_docker_image() -> None:
    port = free_port()
    env = {"KONG_ACE_METRICS_LISTEN": f"127.0.0.1:{port}"}
    with PluginServerProcess(env=env):
        assert "kong_ace_events_in_flight" in scrape_text(port)


def test_a_port_in_use_stops_the_server_with_a_message() -> None:
    port = free_port()
    with metrics_server(port=port), pytest.raises(RuntimeError, match="cannot serve metrics"):
        metrics_server(port=port).start()


def test_dump_ignores_the_metrics_flags() -> None:
    out = subprocess.run([sys.executable, "-m", "kong_ace.gateway.server", "--dump",
                          "--metrics-listen", "0.0.0.0:1"], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.startswith("[{")


def test_a_supervised_server_serves_metrics_from_each_serving_process() -> None:
    port = free_port()
    env = {"KONG_ACE_METRICS_LISTEN": f"127.0.0.1:{port}"}  # as the Docker image passes it
    with PluginServerProcess(args=("--supervise",), env=env) as sup:
        first = KongRPC(sup.socket).call("plugin.GetStatus")["Pid"]
        assert first != sup.pid  # the supervisor serves nothing itself: its child does
        node = KongNode(sup.socket, outcomes_config(), workers=1)
        assert get(node, FLIGHTS, "good").status == 200
        assert sum(v for (n, _), v in scrape(port).items() if n == DECISIONS) == 1
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:  # the supervisor restarts the child at once; its listener follows
            try:
                status = KongRPC(sup.socket, timeout=5).call("plugin.GetStatus")
                if status["Pid"] != first:
                    samples = scrape(port)
                    break
            except (RPCFailure, OSError):
                pass
            assert time.monotonic() < deadline, "no restarted server with metrics"
            time.sleep(0.05)  # polling a restart, bounded by the deadline
        assert ("kong_ace_events_in_flight", labels()) in samples
        assert sum(v for (n, _), v in samples.items() if n == DECISIONS) == 0  # a new process
        node.close()


def test_companion_mode_is_counted_with_its_two_pdk_calls(server: PluginServerProcess) -> None:
    port = server.metrics_port  # type: ignore[attr-defined]
    before = scrape(port)
    node = KongNode(server.socket, outcomes_config(), workers=1, companions=True)
    results = [get(node, FLIGHTS, "good"), get(node, FLIGHTS, "revoked"),
               get(node, "/nowhere", None)]
    assert [r.status for r in results] == [200, 401, 404]
    assert all(len(r.pdk_calls) == 2 for r in results)
    required = KongNode(server.socket, outcomes_config(companions="required"), workers=1)
    assert get(required, FLIGHTS, "good").status == 500  # classic request, companions required
    after = scrape(port)
    flights = op_id("GET", FLIGHTS)
    assert delta(before, after, DECISIONS) == Counter({
        d("proxied", "allowed", flights, "flights", "basic"): 1,
        d("401", "revoked", flights, "flights"): 1,
        d("404", "no_operation"): 1,
        d("500", "companions_missing"): 1,
    })
    # get_ctx + set_ctx per companion request; get_ctx, kong.log.err and the exit for the 500.
    assert delta(before, after, "kong_ace_pdk_calls_per_request_sum") == \
        Counter({labels(): 2 * 3 + 3})
    node.close()
    required.close()
