"""Hardening fixtures: soak scaling, a real plugin server, a real redis-server, the oracles.

CI runs bounded versions; ``KONG_ACE_SOAK=1`` runs many more examples and requests.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest

from kong_ace.testing import KongRPC, PluginServerProcess

from ..php import php_name
from ..redis_server import RedisServer, running

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


# --- an UPSTREAM oracle: what common servers behind Kong would run (SPEC §8) ---
# Written from the servers' documented behaviour and kong/tools/uri.lua, not from kong_ace:
# a request may pass only if every reading below is an operation the application may call.

_KONG_SAFE = re.compile(rb"[^!#$&'()*+,/:;=?@\[\]A-Za-z0-9\-_.~%]")
OVERRIDE_HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")


def kong_forwarded_path(raw_path: str) -> str:
    """kong/tools/uri.lua escape(normalize(path)): the path Kong sends upstream."""
    b = kong_normalize(raw_path).encode("utf-8", "surrogateescape")
    return _KONG_SAFE.sub(lambda m: b"%%%02X" % m.group(0)[0], b).decode("latin-1")


def _unquote(path: str) -> str:
    return unquote_to_bytes(path).decode("utf-8", "surrogateescape")


def _dots(path: str) -> str:
    # RFC 3986 remove_dot_segments plus slash merging (Tomcat, Spring, most Go muxes).
    out: list[str] = []
    for seg in path.split("/")[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg not in (".", ""):
            out.append(seg)
    tail = "/" if path.endswith(("/", "/.", "/..")) and out else ""
    return "/" + "/".join(out) + tail


def upstream_readings(path: str) -> dict[str, str]:
    """The path each kind of upstream routes on, given the raw path Kong forwarded."""
    cut = path.split("#", 1)[0]
    return {
        "kong": kong_normalize(path),
        # PEP 3333 / ASGI: PATH_INFO is percent-decoded, %2F included; no dot removal.
        "wsgi": _unquote(path),
        # A framework that also normalises the decoded path.
        "wsgi-normalising": _dots(_unquote(path)),
        # Tomcat/Jetty: ';' parameters cut from each segment, then decoded and normalised.
        "tomcat": _dots(_unquote("/".join(s.split(";", 1)[0] for s in path.split("/")))),
        # Most servers treat a raw '#' as the start of a fragment.
        "fragment": _unquote(cut),
        # IIS/ASP.NET and some Java stacks read a backslash as a separator.
        "backslash": _dots(_unquote(path).replace("\\", "/")),
    }




def _php_args(raw: str) -> dict[str, list[str]]:
    args: dict[str, list[str]] = {}
    for part in raw.split("&"):
        k, eq, v = part.partition("=")
        name = php_name(_unquote(k.replace("+", " ")))
        if name and eq:
            args.setdefault(name, []).append(_unquote(v.replace("+", " ")))
    return args


def body_args(content_type: str | None, body: str | None) -> dict[str, list[str]]:
    """What Laravel reads from a POST body: $_POST (form, multipart) or the JSON object."""
    if not content_type or body is None:
        return {}
    low = content_type.lower()
    if low.startswith("application/x-www-form-urlencoded"):
        return _php_args(body)
    if low.startswith("multipart/form-data"):
        boundary = content_type.split("boundary=", 1)[-1].strip('"')
        out: dict[str, list[str]] = {}
        for part in body.split("--" + boundary)[1:]:
            head, _, value = part.partition("\r\n\r\n")
            m = re.search(r'name="([^"]*)"', head)
            if m:
                out.setdefault(php_name(m.group(1)), []).append(value.removesuffix("\r\n"))
        return out
    if "/json" in low or "+json" in low:
        try:
            doc = json.loads(body)
        except ValueError:
            return {}
        value = doc.get("_method") if isinstance(doc, dict) else None
        return {"_method": [value]} if isinstance(value, str) else {}
    return {}


def upstream_methods(method: str, headers: dict[str, list[Any]], query: str,
                     body: tuple[str | None, str | None] = (None, None)) -> set[str]:
    """The method alone, and on POST whatever override middleware would run instead: the
    override headers, `_method` in the query as PHP names arguments, `_method` in a form or
    JSON body (Laravel)."""
    methods = {method}
    if method != "POST":
        return methods
    for name, values in headers.items():
        if name.lower().replace("_", "-") in OVERRIDE_HEADERS:
            methods |= {v.upper() for v in values if isinstance(v, str)}
    methods |= {v.upper() for v in _php_args(query).get("_method", [])}
    methods |= {v.upper() for v in body_args(*body).get("_method", [])}
    return methods


def _specificity(template: str) -> tuple[int, ...]:
    # Literal segments beat partial ones, which beat whole-segment parameters (every router).
    return tuple(0 if re.fullmatch(r"\{[^{}]+\}", s) else 1 if "{" in s else 2
                 for s in template.strip("/").split("/"))


def kong_host_matches(pattern: str, host: str | None) -> bool:
    """kong/router/traditional.lua: a '*' is '.+', anchored, an optional port after it."""
    if host is None:
        return False
    if "*" not in pattern:
        return host_key(host) == pattern
    regex = re.escape(pattern).replace(r"\*", ".+") + r"(?::\d+)?"
    return re.fullmatch(regex, host.strip().lower().rstrip(".")) is not None


def route(ops: list[Any], method: str, path: str, host: str | None = None,
          fold: bool = False) -> list[Any]:
    """The operations a router would pick for (method, path): the most specific matches.

    ``fold``: a case-insensitive router (Express, ASP.NET Core); ``host``: the Host header,
    against the API's hosts as Kong's router reads its patterns.
    """
    flags = re.I if fold else 0
    hits = [op for op in ops
            if re.fullmatch(template_regex(op.full).pattern, path, flags | re.S)
            and (not op.hosts or any(kong_host_matches(h, host) for h in op.hosts))]
    same = [op for op in hits if op.method == method]
    if not same and method == "HEAD":
        same = [op for op in hits if op.method == "GET"]
    if not same:
        return []
    best = max(_specificity(op.full) for op in same)
    return [op for op in same if _specificity(op.full) == best]


def host_key(host: str) -> str:
    """Host as a router compares it: lower case, no port, no trailing dot."""
    h = host.strip().lower().rsplit("@", 1)[-1]
    h = h.split(":", 1)[0] if h.count(":") == 1 else h
    return h[:-1] if h.endswith(".") else h


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
    with running(tmp_path, Redis) as r:
        yield r
