"""One table of cases (cases.json) through the harness and through a real Kong 3.9.1.

Each case is judged twice: its ``expect`` must hold on the real Kong (the behaviour, SPEC §4 and
§8, as the upstream receives it), and the harness (``kong_ace.testing``) must report exactly
what the real Kong did: the status, body and ACE's response headers the client got, and the
path, query and headers the upstream received. A difference is a harness bug (fix it in
plugin/kong_ace/testing/) or a limit listed in docs/testing.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kong_ace.testing import KongNode as HarnessNode
from kong_ace.testing import KongRequest, PluginServerProcess
from tests.realkong import configs
from tests.realkong.kong import KongInstall, KongNode, Upstream, parse_raw

CASES = json.loads((Path(__file__).with_name("cases.json")).read_text())["cases"]
MODES = ["companion", "classic"]
# Response headers that are Kong's or the upstream's, not ACE's; of ACE's, those that depend on
# the clock are compared by presence.
KONG_RESPONSE = {"content-type", "content-length", "date", "server", "via", "connection",
                 "keep-alive", "transfer-encoding", "x-kong-request-id",
                 "x-kong-upstream-latency", "x-kong-proxy-latency", "x-kong-response-latency"}
CLOCK_HEADERS = {"retry-after", "ratelimit-reset", "ratelimit"}
# What Kong itself adds to or changes in every proxied request (not ACE's doing).
KONG_UPSTREAM = {"host", "connection", "x-forwarded-for", "x-forwarded-proto",
                 "x-forwarded-host", "x-forwarded-port", "x-forwarded-path",
                 "x-forwarded-prefix", "x-real-ip", "x-kong-request-id", "via"}
_KEY = re.compile(r"\{key:([\w-]+)\}")


def _keyed(text: str) -> str:
    return _KEY.sub(lambda m: configs.ALL_KEYS.get(m.group(1), m.group(1)), text)


def version(case: dict[str, Any]) -> str:
    """The HTTP version on the request line."""
    return "1.0" if case.get("http10") else "1.1"


def request_headers(case: dict[str, Any]) -> list[list[str]]:
    """The case's request headers in order: Host, the fillers, the listed ones, the key."""
    listed = [[k, _keyed(v)] for k, v in case["headers"]
              if not (case.get("http10") and k.lower() == "host")]
    hosts = [h for h in listed if h[0].lower() == "host"]
    rest = [h for h in listed if h[0].lower() != "host"]
    fillers = [[f"x-filler-{i}", "v"] for i in range(1, case.get("filler", 0) + 1)]
    key = [["apikey", configs.ALL_KEYS.get(case["key"], case["key"])]] if "key" in case else []
    return [*hosts, *fillers, *rest, *key]


def _split_target(target: str) -> tuple[str, str | None]:
    """(origin-form target, authority of an absolute-form one)."""
    m = re.match(r"^[a-z]+://([^/?]*)(.*)$", target)
    return (m.group(2) or "/", m.group(1)) if m else (target, None)


def observe(status: int, body: Any, headers: dict[str, str],
            upstream: dict[str, Any] | None) -> dict[str, Any]:
    """What is compared: status, a denial's body, ACE's response headers, the upstream view."""
    shown = {k: ("<set>" if k in CLOCK_HEADERS else v) for k, v in headers.items()
             if k not in KONG_RESPONSE}
    if isinstance(body, bytes):  # Kong's own text error page: without its request_id line
        body = "\n".join(line for line in body.decode("latin-1").splitlines()
                         if not line.startswith("request_id:")).strip()
    return {"status": status, "body": None if upstream is not None else body,
            "headers": shown, "upstream": upstream}


def _upstream_view(method: str, path: str, query: str,
                   headers: dict[str, list[str]]) -> dict[str, Any]:
    kept = {k: v for k, v in headers.items()
            if k not in KONG_UPSTREAM and not k.startswith("x-filler-")}
    return {"_method": method, "_path": path, "_query": query, "headers": kept}


# --- the real Kong ----------------------------------------------------------------------------

class RealSide:
    """A real Kong node (one per mode) that switches configs by POST /config."""

    def __init__(self, node: KongNode, upstream: Upstream) -> None:
        self.node = node
        self.upstream = upstream
        self.config = "outcomes"

    def use(self, name: str) -> None:
        if name != self.config:
            status, body = self.node.post_config(configs.declarative(name, self.upstream.url))
            assert status == 201, body
            self.config = name

    def send(self, case: dict[str, Any]) -> dict[str, Any]:
        self.use(case["config"])
        headers = request_headers(case)
        target = _keyed(case["target"])
        for _ in range(case.get("repeat", 1)):
            self.upstream.clear()
            if case.get("raw"):
                lines = [f"{case['method']} {target} HTTP/{version(case)}",
                         *(f"{k}: {v}" for k, v in headers), "Connection: close", "", ""]
                data = "\r\n".join(lines).encode("latin-1")  # \u00e9 is the byte e9
                status, got, raw_body = parse_raw(self.node.raw(data))
                body = _json(raw_body)
            else:
                resp = self.node.request(case["method"], target, headers)
                status, body = resp.status, resp.json if resp.json is not None else resp.body
                got = {k.lower(): v for k, v in resp.headers.items()}
        seen = self.upstream.received
        assert len(seen) <= 1
        view = None
        if seen:
            rec = seen[0]
            hdrs: dict[str, list[str]] = {}
            for k, v in rec["headers"]:
                hdrs.setdefault(k.lower(), []).append(v)
            view = _upstream_view(rec["method"], rec["path"], rec["query"], hdrs)
        return observe(status, body, got, view)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw


@pytest.fixture(scope="module", params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def real(real_kong: KongInstall, upstream: Upstream, mode: str) -> Iterator[RealSide]:
    node = KongNode(configs.declarative("outcomes", upstream.url), mode=mode, install=real_kong)
    node.start()
    yield RealSide(node, upstream)
    node.cleanup()


# --- the harness ------------------------------------------------------------------------------

class HarnessSide:
    """The harness's Kong (one plugin server per mode, one harness node per config)."""

    def __init__(self, server: PluginServerProcess, mode: str) -> None:
        self.server = server
        self.mode = mode
        self.nodes: dict[str, HarnessNode] = {}

    def node(self, name: str) -> HarnessNode:
        if name not in self.nodes:
            self.nodes[name] = HarnessNode(self.server.socket, configs.ace(name),
                                           consumers=configs.consumers(name), workers=1,
                                           companions=self.mode == "companion")
        return self.nodes[name]

    def send(self, case: dict[str, Any]) -> dict[str, Any]:
        consumer, credential, headers = configs.key_auth(case["config"], request_headers(case))
        target, authority = _split_target(_keyed(case["target"]))
        line = f"{case['method']} {_keyed(case['target'])} HTTP/1.1" if authority else None
        merged: dict[str, Any] = {}
        for k, text in headers:
            # on a raw socket a value goes out as latin-1 bytes: non-ASCII is not UTF-8
            v: Any = text.encode("latin-1") if case.get("raw") and not text.isascii() else text
            merged[k] = [*merged[k], v] if k in merged and isinstance(merged[k], list) else (
                [merged[k], v] if k in merged else v)
        req = KongRequest(method=case["method"], path=target, headers=merged,
                          request_line=line, consumer=consumer, credential=credential,
                          http_version=version(case))
        node = self.node(case["config"])
        for _ in range(case.get("repeat", 1)):
            r = node.request(req)
        view = None
        if r.proxied:
            hdrs = {k: [x.decode("latin-1") if isinstance(x, bytes) else str(x) for x in v]
                    for k, v in r.upstream_headers.items()}
            view = _upstream_view(case["method"], r.upstream_path, r.upstream_query, hdrs)
        got = {k.lower(): str(v) for k, v in r.headers.items()}
        return observe(r.status, r.body, got, view)

    def close(self) -> None:
        for n in self.nodes.values():
            n.close()


@pytest.fixture(scope="module")
def harness(mode: str) -> Iterator[HarnessSide]:
    with PluginServerProcess() as server:
        side = HarnessSide(server, mode)
        yield side
        side.close()


# --- the cases --------------------------------------------------------------------------------

def check_expect(obs: dict[str, Any], expect: dict[str, Any]) -> None:
    """The case's own expectations, on what the real Kong did."""
    assert obs["status"] == expect["status"], obs
    if "message" in expect:
        assert obs["body"] == {"message": expect["message"]}, obs
    if "body" in expect:
        assert obs["body"] == expect["body"], obs
    for name, want in expect.get("headers", {}).items():
        got = obs["headers"].get(name.lower())
        assert got is not None if want == "*" else got == want, (name, obs)
    if "upstream" in expect:
        up = obs["upstream"]
        assert up is not None, obs
        for name, want in expect["upstream"].items():
            got = up.get(name) if name.startswith("_") else up["headers"].get(name)
            assert got is not None if want == "*" else got == want, (name, up)
    if obs["status"] != 200:
        assert obs["upstream"] is None, obs  # a refusal never reaches the upstream


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict[str, Any], real: RealSide, harness: HarnessSide) -> None:
    got_real = real.send(case)
    check_expect(got_real, case.get(f"{real.node.mode}_expect", case["expect"]))
    got_harness = harness.send(case)
    diffs = differences(got_harness, got_real)
    assert not diffs, "the harness differs from the real Kong:\n" + "\n".join(diffs)


def differences(harness: Any, real: Any, where: str = "") -> list[str]:
    """Each place where the harness's observation differs from the real Kong's."""
    if isinstance(harness, dict) and isinstance(real, dict):
        out = []
        for k in sorted(set(harness) | set(real), key=str):
            out += differences(harness.get(k, "<absent>"), real.get(k, "<absent>"),
                               f"{where}.{k}")
        return out
    return [] if harness == real else [f"{where}: harness {harness!r}, real Kong {real!r}"]

