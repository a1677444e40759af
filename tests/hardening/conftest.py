"""Hardening fixtures: soak scaling, a real plugin server, a real redis-server, the oracles.

CI runs bounded versions; ``KONG_ACE_SOAK=1`` runs many more examples and requests.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kong_ace.testing import KongRPC, PluginServerProcess

from ..redis_server import RedisServer

SOAK = os.environ.get("KONG_ACE_SOAK", "") not in ("", "0")


def scale(ci: int, soak: int) -> int:
    """``ci`` in CI, ``soak`` with KONG_ACE_SOAK=1."""
    return soak if SOAK else ci


# --- a reference normaliser, written from Kong's kong/tools/uri.lua `normalize(uri, true)` ---
# Independent of kong_ace.core.normalize: it works on bytes, segment by segment, as the Lua does.

_KONG_RESERVED = b"!*'();:@&=+$,/?%#[]"
_HEX = re.compile(rb"%([0-9A-Fa-f]{2})")


def kong_normalize(uri: str) -> str:
    """What kong.request.get_path() returns for the raw path ``uri``."""
    if uri in ("", "/"):
        return uri
    b = uri.encode("utf-8", "surrogateescape")
    if b"%" in b:
        def dec(m: re.Match[bytes]) -> bytes:
            n = int(m.group(1), 16)
            return m.group(0).upper() if n in _KONG_RESERVED else bytes([n])
        b = _HEX.sub(dec, b)
    if b"." not in b and b"//" not in b:
        return b.decode("utf-8", "surrogateescape")
    out: list[bytes] = []
    while b:
        if b == b"/.":
            b = b"/"
        elif b == b"/..":
            b = b"/"
            if out:
                out.pop()
        elif b in (b".", b".."):
            b = b""
        elif b[:3] == b"../":
            b = b[3:]
        elif b[:2] == b"./" or b[:3] == b"/./":
            b = b[2:]
        elif b[:4] == b"/../":
            b = b[3:]
            if out:
                out.pop()
        elif b[:2] == b"//":
            b = b[1:]
        else:
            i = b.find(b"/", 1)
            if i == -1:
                out.append(b)
                b = b""
            else:
                out.append(b[:i])
                b = b[i:]
    return b"".join(out).decode("utf-8", "surrogateescape")


# --- an entitlement oracle, read from the config dict (no catalog, no matcher) ---

def template_regex(template: str) -> re.Pattern[str]:
    """A full-path template as a regex: each {param} is a non-empty run without '/'."""
    parts = re.split(r"\{[^{}]+\}", template.rstrip("/") or "/")
    return re.compile("[^/]+".join(re.escape(p) for p in parts) + "/?", re.S)


def entitled(config: dict[str, Any], app_id: str, api: str, method: str, template: str,
             op_id: str) -> bool:
    """Does an approved registration of ``app_id`` cover this operation?"""
    (app,) = [a for a in config["applications"] if a["id"] == app_id]
    for reg in app.get("registrations") or []:
        if reg.get("status", "approved") != "approved":
            continue
        if reg.get("api") == api:
            return True
        for pkg in config["packages"]:
            if pkg["name"] != reg.get("package"):
                continue
            for e in pkg["operations"]:
                if e["api"] != api:
                    continue
                if "operation_id" not in e and "method" not in e:
                    return True
                if e.get("operation_id") == op_id:
                    return True
                if (e.get("method"), e.get("path")) == (method, template):
                    return True
    return False


# --- processes ---

def server_log_has_no_traceback(log: str) -> None:
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def status_of() -> Any:
    def status(path: str) -> dict[str, Any]:
        rpc = KongRPC(path, timeout=10)
        try:
            return rpc.call("plugin.GetStatus")  # type: ignore[no-any-return]
        finally:
            rpc.close()
    return status


@pytest.fixture
def plugin_server() -> Iterator[PluginServerProcess]:
    """A fresh real `kong-ace-server` (gevent mode) for one test."""
    with PluginServerProcess(args=("--event-timeout", "10")) as srv:
        yield srv


class Redis(RedisServer):
    """kill -9 and restart keep acknowledged writes (AOF, fsync always), so counts survive a
    crash and a limit stays exact across it."""

    persistence = ("--appendonly", "yes", "--appendfsync", "always")

    def settings(self, timeout_ms: int = 300) -> dict[str, Any]:  # type: ignore[override]
        return {"host": "127.0.0.1", "port": self.port, "database": 0, "timeout": timeout_ms}

    def counters(self) -> dict[str, int]:
        c = self.client()
        return {k.decode(): int(c.get(k) or 0) for k in c.scan_iter("ace:rl:*")}


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[Redis]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: run `bash .ci/setup`")
    r = Redis(tmp_path)
    r.start()
    yield r
    r.stop()
