"""Fuzzed configs and broken specs through StartInstance: a ConfigError naming the place."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kong_ace.testing import KongNode, KongRequest, KongRPC, PluginServerProcess, RPCFailure

from .catalog import KEYS, hardening_config
from .conftest import scale

PREFIX = "ace: invalid configuration: "
# "<place>: <problem>", the place being a config path like apis[0].spec_file or config.
PLACE = re.compile(r"^\S[^\n]*?: \S")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**53) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


BASE = hardening_config(rate_limiting={"window_type": "fixed", "fault_tolerant": False,
                                       "sync_rate": None, "hide_client_headers": False})
WHERE = _paths(BASE)


def _start(rpc: KongRPC, config: Any) -> int:
    return rpc.call("plugin.StartInstance",  # type: ignore[no-any-return]
                    {"Name": "ace", "Config": json.dumps(config)})["Id"]


def _check_rejection(exc: RPCFailure) -> None:
    msg = str(exc)
    assert msg.startswith(PREFIX), msg
    assert PLACE.match(msg[len(PREFIX):]), msg
    assert "Traceback" not in msg and "Error(" not in msg, msg


def test_fuzzed_configs_are_accepted_or_name_the_place(
        plugin_server: PluginServerProcess) -> None:
    rpc = KongRPC(plugin_server.socket, timeout=30)
    node = KongNode(plugin_server.socket, hardening_config(), workers=1)  # a working instance
    assert node.request(KongRequest(path="/flights/v1/flights",
                                    headers={"apikey": KEYS["basic"]})).status == 200
    outcome = {"accepted": 0, "rejected": 0}

    @settings(max_examples=scale(300, 5000), deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck), database=None)
    @given(st.sampled_from(WHERE), json_values, st.sampled_from(["set", "drop", "wrap"]))
    def prop(where: tuple[Any, ...], value: Any, how: str) -> None:
        config: Any = copy.deepcopy(BASE)
        if not where:
            config = value
        else:
            parent = config
            for step in where[:-1]:
                parent = parent[step]
            if how == "drop" and isinstance(parent, dict):
                del parent[where[-1]]
            elif how == "wrap":
                parent[where[-1]] = [parent[where[-1]]]
            else:
                parent[where[-1]] = value
        try:
            iid = _start(rpc, config)
            rpc.call("plugin.CloseInstance", iid)
            outcome["accepted"] += 1
        except RPCFailure as exc:
            _check_rejection(exc)
            outcome["rejected"] += 1

    prop()
    # The working instance was never replaced or disturbed.
    assert node.request(KongRequest(path="/flights/v1/flights",
                                    headers={"apikey": KEYS["basic"]})).status == 200
    node.close()
    rpc.close()
    assert outcome["rejected"] > 20 and outcome["accepted"] > 5, outcome
    assert "Traceback" not in plugin_server.log, plugin_server.log[-3000:]


def _broken_specs(tmp: Path) -> dict[str, dict[str, Any]]:
    (tmp / "bin.yaml").write_bytes(b"\xff\xfe\x00garbage")
    (tmp / "adir").mkdir()
    (tmp / "deep.yaml").write_text("openapi: 3.0.0\nx: " + "[" * 50000 + "]" * 50000)
    (tmp / "swagger.yaml").write_text("swagger: '2.0'\npaths: {}\n")
    (tmp / "ref.yaml").write_text(
        "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n"
        "  /a: {$ref: 'missing.yaml#/x'}\n")
    (tmp / "refbin.yaml").write_text(
        "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n"
        "  /a: {$ref: 'bin.yaml#/x'}\n")
    deep_json = '{"openapi": "3.0.0", "x": ' + "[" * 900 + "]" * 900 + "}"
    return {
        "missing file": {"spec_file": str(tmp / "nope.yaml")},
        "directory": {"spec_file": str(tmp / "adir")},
        "device": {"spec_file": "/dev/zero"},
        "not UTF-8": {"spec_file": str(tmp / "bin.yaml")},
        "nested 50,000 deep (segfaulted libyaml)": {"spec_file": str(tmp / "deep.yaml")},
        "JSON nested 900 deep": {"spec": deep_json},
        "swagger 2": {"spec_file": str(tmp / "swagger.yaml")},
        "missing $ref file": {"spec_file": str(tmp / "ref.yaml")},
        "$ref to a non-UTF-8 file": {"spec_file": str(tmp / "refbin.yaml")},
        "NUL in YAML": {"spec": "openapi: 3.0.0\x00"},
        "bad template": {"spec": "openapi: 3.0.0\ninfo: {title: t, version: '1'}\n"
                                 "paths:\n  /a/{:\n    get: {responses: {}}\n"},
        "paths a list": {"spec": "openapi: 3.0.0\npaths: [1]\n"},
        "spec a number": {"spec": 5},
    }


def test_broken_specs_are_config_errors_and_keep_the_server(
        plugin_server: PluginServerProcess, tmp_path: Path) -> None:
    rpc = KongRPC(plugin_server.socket, timeout=30)
    node = KongNode(plugin_server.socket, hardening_config(), workers=1)
    for name, api in _broken_specs(tmp_path).items():
        with pytest.raises(RPCFailure) as info:
            _start(rpc, hardening_config(apis=[{"name": "x", **api}], packages=[],
                                         applications=[]))
        _check_rejection(info.value)
        assert "apis[0]" in str(info.value), (name, str(info.value))
    # Not even a JSON object, or no JSON at all.
    for raw in ("null", "[]", "5", "{", "", None, 7):
        with pytest.raises(RPCFailure) as info:
            rpc.call("plugin.StartInstance", {"Name": "ace", "Config": raw})
        assert str(info.value).startswith(PREFIX), str(info.value)
    assert plugin_server.alive()
    assert node.request(KongRequest(path="/flights/v1/flights",
                                    headers={"apikey": KEYS["basic"]})).status == 200
    node.close()
    rpc.close()
    assert "Traceback" not in plugin_server.log, plugin_server.log[-3000:]


def test_a_bad_reload_keeps_the_last_good_config_and_a_fresh_one_fails_closed(
        plugin_server: PluginServerProcess) -> None:
    # SPEC §10 (new): a bad reload used to answer 500 on the worker that saw it first; now the
    # last good config of the plugin keeps serving. With no last good config it still fails
    # closed (Kong's error(err) in get_instance_id: 500).
    node = KongNode(plugin_server.socket, hardening_config(), workers=2)
    good = KongRequest(path="/flights/v1/flights", headers={"apikey": KEYS["basic"]})
    keyless = KongRequest(path="/flights/v1/flights")
    assert [node.request(good, worker=w).status for w in (0, 1)] == [200, 200]
    bad = hardening_config()
    bad["packages"][0]["operations"][0]["operation_id"] = "noSuchOperation"
    node.configure(bad, workers=[0])  # worker 0 sees the broken reload first
    r = node.request(good, worker=0)
    assert (r.status, r.errors) == (200, [])
    # Kong's error log hears of it once (kong.log.err), not once per request.
    assert [m for lvl, m in r.logs if lvl == "err" and "still serving its last good" in m]
    r = node.request(keyless, worker=0)
    assert r.status == 401  # enforced by the last good config
    assert not [m for lvl, m in r.logs if lvl == "err"]
    assert node.request(good, worker=1).status == 200  # the running instance is untouched
    fresh = KongNode(plugin_server.socket, bad, workers=1)  # another plugin id: nothing good
    # Kong logs the StartInstance error of the first request only; every later request is
    # answered 500 by the fail-closed instance: no log line, no StartInstance, one PDK call.
    r = fresh.request(good)
    assert (r.status, r.proxied) == (500, False)
    assert "packages[0].operations[0]" in r.errors[0] and "no last good config" in r.errors[0]
    for _ in range(3):
        r = fresh.request(good)
        assert (r.status, r.proxied, r.errors, r.logs) == (500, False, [], [])
        assert r.pdk_calls == ["kong.response.exit"]
    node.configure(hardening_config())  # fixed: both workers serve the new config
    assert [node.request(good, worker=w).status for w in (0, 1)] == [200, 200]
    node.close()
    fresh.close()
