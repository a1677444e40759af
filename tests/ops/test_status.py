"""`kong-ace status` against a real plugin server, human and --json; unknown keys rendered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kong_ace.gateway.compiled import canonical_config, config_key
from kong_ace.ops.output import Output
from kong_ace.ops.status import render
from kong_ace.testing import KongNode, PluginServerProcess
from tests.gateway.support import get, outcomes_config
from tests.ops.helpers import as_json, kong_ace
from tests.redis_server import RedisServer

FLIGHTS = "/flights/v1/flights"



@pytest.fixture
def server() -> Iterator[PluginServerProcess]:
    with PluginServerProcess() as srv:
        yield srv


def redis_config(redis: RedisServer) -> dict:
    config = outcomes_config(rate_limiting={"sync_rate": 0, "redis": redis.settings})
    config["applications"] = [a for a in config["applications"] if not a.get("consumer")]
    return config


def test_json_shows_instances_hashes_configs_and_store_health(
        server: PluginServerProcess, redis: RedisServer) -> None:
    node = KongNode(server.socket, redis_config(redis), workers=2)
    for w in (0, 1):
        assert get(node, FLIGHTS, "good", worker=w).status == 200
    digest = config_key(canonical_config(node.plugin_conf))
    proc = kong_ace("status", "--socket", server.socket, "--json")
    assert proc.returncode == 0, proc.stderr
    status = as_json(proc)
    assert status["Pid"] == server.pid and status["Uptime"] > 0
    ace = status["Plugins"]["ace"]
    assert ace["Events"] == 0 and ace["Compiled"] == 1
    assert sorted((i["PluginId"], i["ConfigHash"]) for i in ace["Instances"]) == \
        [(node.plugin_id, digest)] * 2
    (config,) = ace["Configs"]
    assert (config["Hash"], config["Instances"]) == (digest, 2)
    assert config["CompileSeconds"] > 0
    (store,) = ace["Stores"]
    assert (store["Store"], store["Calls"], store["Errors"], store["Healthy"]) == \
        ("redis", 2, 0, True)

    redis.stop()
    assert get(node, FLIGHTS, "good").status == 200  # fault_tolerant (default): admitted
    (store,) = as_json(kong_ace("status", "--socket", server.socket, "--json"))[
        "Plugins"]["ace"]["Stores"]
    assert (store["Calls"], store["Errors"], store["Healthy"]) == (3, 1, False)
    assert store["LastErrorMessage"] == "ConnectionError"
    node.close()


def test_human_view_lists_the_same_things(server: PluginServerProcess,
                                          redis: RedisServer) -> None:
    node = KongNode(server.socket, redis_config(redis), workers=2)
    for w in (0, 1):
        get(node, FLIGHTS, "good", worker=w)
    digest = config_key(canonical_config(node.plugin_conf))
    proc = kong_ace("status", "--socket", server.socket)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"pid {server.pid}" in out and "events in flight 0" in out
    assert "metrics off" in out
    assert "Instances (2)" in out and out.count(node.plugin_id) == 2
    assert out.count(digest[:12]) == 3  # two instances and one compiled config
    assert "Compiled configs (1)" in out
    assert "Rate-limit stores (1)" in out
    assert "│ redis │ yes" in out
    node.close()


def test_the_socket_comes_from_the_environment(server: PluginServerProcess) -> None:
    proc = kong_ace("status", "--json", env={"KONG_ACE_SOCKET": server.socket})
    assert proc.returncode == 0 and as_json(proc)["Pid"] == server.pid


def test_no_server_is_a_clear_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "ace.sock")
    proc = kong_ace("status", "--socket", missing)
    assert proc.returncode == 1
    assert f"cannot reach the plugin server at {missing}" in proc.stderr
    assert "hint:" in proc.stderr
    data = as_json(kong_ace("status", "--socket", missing, "--json"))
    assert data["socket"] == missing and "cannot reach" in data["error"]


def test_keys_a_newer_server_adds_are_rendered(capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    plugin = {
        "Name": "ace", "Instances": [], "Events": 3, "Compiled": 0, "Stores": [],
        "RejectedConfigs": [{"PluginId": "p1", "Hash": "ab" * 32, "Error": "apis[0]: bad",
                             "RejectedAt": now - 65}],
        "LastGood": "cd" * 32,
        "Breakers": [],
    }
    render(Output(), "/x.sock", {"Pid": 7, "Plugins": {"ace": plugin}, "Uptime": 3700,
                                 "Supervisor": {"Restarts": 2}}, plugin)
    out = capsys.readouterr().out
    assert "pid 7, up 1h 1m, events in flight 3" in out
    assert "Rejected configs (1)" in out
    assert "abababababab" in out and "apis[0]: bad" in out and "1m 5s ago" in out
    assert f"Last good: {'cd' * 6}" in out
    assert "Breakers: none" in out
    assert "Supervisor: {'Restarts': 2}" in out
    assert "in-process counters only" in out


def test_a_rejected_config_is_the_headline_and_fail_closed_exits_2(
        server: PluginServerProcess) -> None:
    good = KongNode(server.socket, outcomes_config(), workers=1)
    assert get(good, FLIGHTS, "good").status == 200
    proc = kong_ace("status", "--socket", server.socket)
    assert proc.returncode == 0 and "WARNING" not in proc.stdout and "FAIL" not in proc.stdout
    bad = outcomes_config()
    bad["packages"][0]["operations"][0]["api"] = "nosuch"
    good.configure(bad)  # rejected: the last good config keeps deciding
    assert get(good, FLIGHTS, "good").status == 200
    proc = kong_ace("status", "--socket", server.socket)
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("WARNING")]
    assert good.plugin_id in line and "unknown API 'nosuch'" in line
    assert "still serving its last good config" in line

    fresh = KongNode(server.socket, bad, workers=1)  # another plugin: nothing good to serve
    assert get(fresh, FLIGHTS, "good").status == 500
    proc = kong_ace("status", "--socket", server.socket)
    assert proc.returncode == 2, proc.stderr
    first = proc.stdout.splitlines()[1]
    assert first.startswith(f"FAIL CLOSED: plugin {fresh.plugin_id}: config ")
    assert "no last good config: Kong answers 500" in first
    assert kong_ace("status", "--socket", server.socket, "--json").returncode == 2
    fresh.configure(outcomes_config())  # fixed: nothing fails closed any more
    assert get(fresh, FLIGHTS, "good").status == 200
    assert kong_ace("status", "--socket", server.socket).returncode == 0
    good.close()
    fresh.close()
