"""Configs as Kong 3.9 hands them to StartInstance (SPEC §10): vault references, configs Kong
accepts and ACE rejects, and the last good config of each plugin."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from kong_ace.gateway.rejected import FAILED
from kong_ace.testing import KongNode, KongRPC, PluginServerProcess
from tests.gateway.support import MOBILE, get, outcomes_config
from tests.redis_server import RedisServer, running

PASSWORD = "s3cret-from-the-vault"
REFERENCE = "{vault://env/ace-redis-pass}"


class PasswordRedis(RedisServer):
    """A redis-server that requires a password (Redis AUTH)."""

    persistence = ("--appendonly", "no", "--requirepass", PASSWORD)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                           password=PASSWORD)


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordRedis]:
    with running(tmp_path_factory.mktemp("redis-auth"), PasswordRedis) as server:
        yield server


@pytest.fixture
def server() -> Iterator[PluginServerProcess]:
    with PluginServerProcess() as srv:
        yield srv


def status(server: PluginServerProcess) -> dict[str, Any]:
    rpc = KongRPC(server.socket)
    try:
        return rpc.call("plugin.GetStatus")["Plugins"]["ace"]  # type: ignore[no-any-return]
    finally:
        rpc.close()


def redis_config(port: int, password: str) -> dict[str, Any]:
    return outcomes_config(rate_limiting={
        "sync_rate": 0, "fault_tolerant": False,
        "redis": {"host": "127.0.0.1", "port": port, "password": password}})


def bad_config() -> dict[str, Any]:
    """Valid for Kong's schema, rejected by ACE: a package names an unknown operation."""
    bad = copy.deepcopy(outcomes_config())
    bad["packages"][0]["operations"].append({"api": "flights", "operation_id": "noSuchOp"})
    return bad


# --- vault references ---------------------------------------------------------------------


def test_a_vault_reference_reaches_redis_through_kongs_refs(
        server: PluginServerProcess, password_redis: PasswordRedis) -> None:
    node = KongNode(server.socket, redis_config(password_redis.port, REFERENCE),
                    vault={"ACE_REDIS_PASS": PASSWORD}, consumers=[MOBILE])
    sent = node.workers[0].conf
    assert sent["rate_limiting"]["redis"]["$refs"] == {"password": REFERENCE}
    assert sent["rate_limiting"]["redis"]["password"] == PASSWORD
    r = get(node, "/flights/v1/flights", "good")
    # Before: "rate_limiting.redis.$refs: unknown field", every request answered 500.
    assert (r.status, r.errors) == (200, [])
    assert r.headers["RateLimit-Remaining"] == "999"  # counted in the password-protected Redis
    assert any(k.startswith(b"ace:rl:") for k in password_redis.client().scan_iter())
    node.close()


def test_refs_do_not_change_the_config_hash(server: PluginServerProcess,
                                            password_redis: PasswordRedis) -> None:
    by_ref = KongNode(server.socket, redis_config(password_redis.port, REFERENCE),
                      vault={"ACE_REDIS_PASS": PASSWORD}, consumers=[MOBILE])
    literal = KongNode(server.socket, redis_config(password_redis.port, PASSWORD),
                       consumers=[MOBILE])
    assert "$refs" not in literal.workers[0].conf["rate_limiting"]["redis"]
    assert get(by_ref, "/flights/v1/flights", "good").status == 200
    assert get(literal, "/flights/v1/flights", "good").status == 200
    st = status(server)
    assert (st["Compiled"], st["Compiles"]) == (1, 1)  # the same resolved config, compiled once
    by_ref.close()
    literal.close()


def test_kong_sends_the_processed_config(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, outcomes_config(), workers=2, instance_name="ace-global",
                    consumers=[MOBILE])
    a, b = (w.conf for w in node.workers)
    text = json.dumps(a)
    assert "null" not in text  # unset fields are absent, never null
    assert "anonymous" not in a and "route_id" not in a
    assert a["key_names"] == ["apikey"] and a["rate_limiting"]["window_type"] == "sliding"
    assert a["__plugin_id"] == b["__plugin_id"] and a["__ws_id"] == b["__ws_id"]
    assert a["__key__"] == f"plugins:ace:::::{a['__ws_id']}"
    assert a["plugin_instance_name"] == "ace-global"
    assert a["__seq__"] != b["__seq__"]  # one shared counter, one value per worker
    assert [get(node, "/flights/v1/flights", "good", worker=w).status for w in (0, 1)] == \
        [200, 200]
    node.close()


# --- configs ACE rejects --------------------------------------------------------------------


def test_a_rejected_config_keeps_serving_the_last_good_one(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, outcomes_config(), workers=2, consumers=[MOBILE])
    assert get(node, "/flights/v1/flights", "good").status == 200
    node.configure(bad_config())
    for w in (0, 1):
        for _ in range(5):
            r = get(node, "/flights/v1/flights", "good", worker=w)
            assert (r.status, r.errors) == (200, [])  # before: 500 on every request
            assert get(node, "/flights/v1/flights", "revoked", worker=w).status == 401
    st = status(server)
    (rej,) = st["Rejected"]
    assert rej["PluginId"] == node.plugin_id
    assert rej["Error"] == "packages[0].operations[3]: API 'flights' has no operation with " \
        "operation_id 'noSuchOp'"
    assert len(rej["ConfigHash"]) == 64 and rej["Serving"] != rej["ConfigHash"]
    assert rej["Time"] > 0
    assert st["Compiles"] == 2  # the good config, and the bad one once
    assert server.log.count("rejected config") == 1  # logged at error level, once
    assert "ERROR" in next(line for line in server.log.splitlines() if "rejected" in line)
    # A good config again: served, and the rejection is cleared.
    fixed = outcomes_config(match_policy="if_present")
    node.configure(fixed)
    assert get(node, "/nowhere", "good").status == 200  # if_present: passes through
    assert status(server)["Rejected"] == []
    node.close()


def test_no_last_good_config_answers_500_and_compiles_once(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, bad_config(), workers=2)
    for i in range(10):
        r = get(node, "/flights/v1/flights", "good", worker=i % 2)
        assert (r.status, r.proxied) == (500, False)
        # Kong's error log has it once (the first StartInstance's error), not per request.
        assert r.errors == (["starting instance: ace: invalid configuration: packages[0]."
                             "operations[3]: API 'flights' has no operation with operation_id "
                             "'noSuchOp'" + FAILED] if i == 0 else [])
    st = status(server)
    assert st["Compiles"] == 1  # before: the catalog was compiled again on every request
    assert st["Failures"] == 1
    assert st["Rejected"][0]["Serving"] is None
    assert server.log.count("rejected config") == 1
    node.close()


def test_the_last_good_config_is_per_plugin(server: PluginServerProcess) -> None:
    first = KongNode(server.socket, outcomes_config(), consumers=[MOBILE])
    second = KongNode(server.socket, outcomes_config(match_policy="if_present"),
                      consumers=[MOBILE])
    assert get(first, "/nowhere", "good").status == 404  # required
    assert get(second, "/nowhere", "good").status == 200  # if_present
    first.configure(bad_config())
    second.configure(bad_config())
    assert get(first, "/nowhere", "good").status == 404  # each keeps its own last good
    assert get(second, "/nowhere", "good").status == 200
    assert {r["PluginId"] for r in status(server)["Rejected"]} == {first.plugin_id,
                                                                  second.plugin_id}
    first.close()
    second.close()


def test_the_docs_name_what_an_operator_sees() -> None:
    running = (Path(__file__).resolve().parents[2] / "docs" / "running.md").read_text()
    assert "existing instances keep serving" not in running
    assert "last good" in running
