"""Plugin instances as Kong manages them: per worker, per config version, shared compiled state."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from kong_ace.testing import KongNode, KongRPC, PluginServerProcess
from tests.gateway.support import MOBILE, get, outcomes_config


@pytest.fixture(params=["gevent", "threading"])
def server(request: pytest.FixtureRequest) -> Iterator[PluginServerProcess]:
    with PluginServerProcess(args=("--mode", request.param)) as srv:
        yield srv


def status(server: PluginServerProcess) -> dict:
    rpc = KongRPC(server.socket)
    try:
        return rpc.call("plugin.GetStatus")["Plugins"]["ace"]  # type: ignore[no-any-return]
    finally:
        rpc.close()


def test_two_workers_share_one_compiled_config_and_one_counter(
        server: PluginServerProcess) -> None:
    node = KongNode(server.socket, outcomes_config(), workers=2, consumers=[MOBILE])
    seats = "/flights/v1/flights/BA1/seats"  # 2 per minute for the application
    assert get(node, seats, "good", worker=0).status == 200
    assert get(node, seats, "good", worker=1).status == 200
    # Each worker started its own instance (plugin.lua keeps running_instances per worker)...
    ids = [w.running[node.plugin_id]["id"] for w in node.workers]
    assert ids[0] != ids[1]
    st = status(server)
    assert sorted(i["Id"] for i in st["Instances"]) == sorted(ids)
    # ...compiled once, counting into one storage: the third call is over the limit on either.
    assert st["Compiled"] == 1
    assert get(node, seats, "good", worker=0).status == 429
    assert get(node, seats, "good", worker=1).status == 429
    node.close()


def test_config_change_takes_effect_on_the_next_request(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, outcomes_config(), workers=2, consumers=[MOBILE])
    assert get(node, "/bookings/v2/bookings", "pending").message == \
        "registration pending approval"
    seats = "/flights/v1/flights/BA1/seats"
    assert get(node, seats, "good").status == 200
    old = node.workers[0].running[node.plugin_id]["id"]

    approved = outcomes_config()
    approved["applications"][3]["registrations"][0]["status"] = "approved"
    node.configure(approved)
    r = get(node, "/bookings/v2/bookings", "pending")
    assert (r.status, r.upstream("X-ACE-Application-ID")) == (200, "pending")
    new = node.workers[0].running[node.plugin_id]["id"]
    assert new != old and node.workers[0].closed == [old]  # StartInstance, then CloseInstance
    st = status(server)
    assert old not in [i["Id"] for i in st["Instances"]]
    assert st["Compiled"] == 1  # the old compiled config went with its last instance
    # Counters survive the reload: one more seat listing is allowed, then 429.
    assert get(node, seats, "good").status == 200
    assert get(node, seats, "good").status == 429
    node.close()


def test_bad_config_is_rejected_and_the_last_good_one_keeps_serving(
        server: PluginServerProcess) -> None:
    # SPEC §10 (new): this test used to expect a 500 on worker 1 (Kong's error(err) after a
    # failed StartInstance); a config ACE rejects now never replaces the last good one.
    node = KongNode(server.socket, outcomes_config(), workers=2, consumers=[MOBILE])
    assert get(node, "/flights/v1/flights", "good", worker=0).status == 200

    bad = copy.deepcopy(outcomes_config())
    bad["packages"][0]["operations"].append({"api": "flights", "method": "DELETE",
                                             "path": "/flight/{id}"})
    node.configure(bad, workers=[1])  # worker 1 sees the new config first
    r = get(node, "/flights/v1/flights", "good", worker=1)
    assert (r.status, r.errors) == (200, [])  # served by the last good config
    assert get(node, "/flights/v1/flights", None, worker=1).status == 401  # still enforced
    (rejected,) = status(server)["Rejected"]
    assert rejected["PluginId"] == node.plugin_id
    assert "packages[0].operations[3]: API 'flights' has no operation" in rejected["Error"]
    assert "DELETE /flight/{id}" in rejected["Error"]
    assert rejected["Serving"] is not None
    # Worker 0 still runs the old config, on the same instance.
    before = node.workers[0].running[node.plugin_id]["id"]
    assert get(node, "/flights/v1/flights", "good", worker=0).status == 200
    assert node.workers[0].running[node.plugin_id]["id"] == before
    node.close()


def test_restarted_server_instances_are_restarted_by_kong(server: PluginServerProcess) -> None:
    node = KongNode(server.socket, outcomes_config(), workers=1, consumers=[MOBILE])
    assert get(node, "/flights/v1/flights", "good").status == 200
    # The instance vanishes (as after a plugin-server restart): "no plugin instance" makes
    # Kong forget its id and start a new instance, and the request is still enforced.
    rpc = KongRPC(server.socket)
    rpc.call("plugin.CloseInstance", node.workers[0].running[node.plugin_id]["id"])
    rpc.close()
    r = get(node, "/flights/v1/flights", None)
    assert (r.status, r.message) == (401, "No API key found in request")
    assert any("no plugin instance" in msg for _, msg in r.logs)
    node.close()


def test_a_stopping_server_leaves_its_successors_socket_alone() -> None:
    with PluginServerProcess() as first:
        # A reload: the new server takes over the socket path while the old one still runs.
        second = PluginServerProcess(prefix=first.prefix).start()
        try:
            first.proc.terminate()  # type: ignore[union-attr]
            first.proc.wait(timeout=10)  # type: ignore[union-attr]
            node = KongNode(first.socket, outcomes_config(), consumers=[MOBILE])
            assert get(node, "/flights/v1/flights", None).status == 401  # served by the second
            node.close()
        finally:
            second.stop()
