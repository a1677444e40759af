"""The harness's companions (kong_ace.testing.companions) against the cases busted runs on the Lua.

tests/companions/cases.json is the one table of cases: tests/lua/companions_spec.lua runs it
against plugin/kong/plugins/ace-*/handler.lua, this file against the Python that plays them in
the end-to-end suites. A case that passes on one side only means the two have drifted apart.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kong_ace.testing import companions
from kong_ace.testing.pdk import KongPDK, KongRequest

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((ROOT / "tests/companions/cases.json").read_text())


def kong_request(req: dict[str, Any]) -> KongRequest:
    headers: dict[str, Any] = dict(req.get("headers") or {})
    for i in range(1, req.get("filler", 0) + 1):
        headers[f"x-filler-{i}"] = str(i)
    method, target, authority = req.get("method", "GET"), req.get("target", "/"), req.get(
        "authority")
    # nginx's $host is the request line's host when the target is in absolute form.
    line = None if authority is None else f"{method} http://{authority}{target} HTTP/1.1"
    return KongRequest(method=method, path=target, headers=headers, request_line=line,
                       route=req.get("route"), service=req.get("service"),
                       consumer=req.get("consumer"), credential=req.get("credential"),
                       upstream_uri=req.get("upstream_uri"), body=req.get("body"),
                       body_in_file=bool(req.get("body_in_file")))


@pytest.mark.parametrize("case", CASES["context"], ids=lambda c: c["name"])
def test_context(case: dict[str, Any]) -> None:
    pdk = KongPDK(kong_request(case["request"]), [])
    pdk.ctx[companions.VERDICT_KEY] = {"allow": True}  # a stale verdict never survives
    companions.context(pdk)
    assert companions.VERDICT_KEY not in pdk.ctx
    got = pdk.ctx[companions.REQUEST_KEY]
    for key, want in case["expect"].items():
        assert got.get(key) == want, key
    if "expect_header_count" in case:
        assert len(got["headers"]) == case["expect_header_count"]
    for name, want in case.get("expect_headers_include", {}).items():
        assert got["headers"][name] == want


@pytest.mark.parametrize("case", CASES["guard"], ids=lambda c: c["name"])
def test_guard(case: dict[str, Any]) -> None:
    pdk = KongPDK(kong_request(case["request"]), case.get("consumers") or [])
    if "verdict" in case:
        pdk.ctx[companions.VERDICT_KEY] = case["verdict"]
    companions.guard(pdk)
    want = case["expect"]
    if "exit" in want:
        assert pdk.exit is not None
        status, body, headers = pdk.exit
        assert {"status": status, "body": body, "headers": headers} == want["exit"]
        if status == 503:
            assert [level for level, _ in pdk.logs] == ["err"]  # Kong's error log says why
    else:
        assert pdk.exit is None
    for name, value in want.get("upstream", {}).items():
        got = pdk.upstream_headers.get(name)
        assert (got[0] if got else None) == value, name
    if "query" in want:
        assert pdk.upstream_query == want["query"]
    if "path" in want:
        assert pdk.upstream_path == want["path"]
    if "response_headers" in want:
        assert pdk.response_headers == want["response_headers"]
    if "consumer" in want:
        assert pdk.authenticated is not None and pdk.authenticated[0] == want["consumer"]
    elif "exit" not in want:
        assert pdk.authenticated is None
    if "serialized" in want:
        assert pdk.serialized == want["serialized"]


def test_busted_runs_the_same_cases_on_the_lua() -> None:
    busted = shutil.which("busted")
    if busted is None:
        pytest.fail("busted is missing: run `bash .ci/setup` (Debian package lua-busted)")
    out = subprocess.run([busted, "-o", "TAP", "tests/lua"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    total = len(CASES["context"]) + len(CASES["guard"])
    assert out.stdout.count("\nok ") + out.stdout.startswith("ok ") >= total


def test_lua_and_python_agree_on_keys_limits_and_priorities() -> None:
    from kong_ace.gateway import companion, plugin

    lua = {name: (ROOT / f"plugin/kong/plugins/{name}/handler.lua").read_text()
           for name in ("ace-context", "ace-guard")}
    assert f'REQUEST_KEY = "{companion.REQUEST_KEY}"' in lua["ace-context"]
    for text in lua.values():
        assert f'VERDICT_KEY = "{companion.VERDICT_KEY}"' in text
    assert companions.REQUEST_KEY == companion.REQUEST_KEY
    assert companions.VERDICT_KEY == companion.VERDICT_KEY
    assert f"MAX_HEADERS = {companions.MAX_HEADERS}" in lua["ace-context"]
    assert "PRIORITY = 956" in lua["ace-context"] and "PRIORITY = 954" in lua["ace-guard"]
    assert 954 < plugin.priority < 956


def test_the_image_and_the_example_enable_the_companions_globally() -> None:
    import yaml

    deck = yaml.safe_load((ROOT / "kong.yml").read_text())
    names = [p["name"] for p in deck["plugins"]]  # top-level plugins[] are global
    assert {"ace", "ace-context", "ace-guard"} <= set(names)
    for service in deck["services"]:
        scoped = [p["name"] for r in [service, *service.get("routes", [])]
                  for p in r.get("plugins", [])]
        assert not {"ace", "ace-context", "ace-guard"} & set(scoped)
    docker = (ROOT / "Dockerfile").read_text()
    assert "KONG_PLUGINS=bundled,ace,ace-context,ace-guard" in docker
    assert "COPY plugin/kong /opt/kong-ace/lua/kong" in docker
    assert 'KONG_LUA_PACKAGE_PATH="/opt/kong-ace/lua/?.lua;;"' in docker
