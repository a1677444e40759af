"""Kong's PDK answered from a request description, with the effects the plugin makes recorded.

The typed Step names and the multi-map fix-ups follow mp_rpc.lua (``get_step_method``,
``must_fix``/``fix_mmap``); ``kong.nginx.get_var`` and friends follow plugin.lua's
``exposed_api``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from kong_ace.core.normalize import normalize_path
from kong_ace.gateway.request_line import kong_escape

# mp_rpc.lua get_step_method: by_pdk_method
STEP_METHODS = {
    "kong.client.get_credential": "plugin.StepCredential",
    "kong.client.load_consumer": "plugin.StepConsumer",
    "kong.client.get_consumer": "plugin.StepConsumer",
    "kong.client.authenticate": "plugin.StepCredential",
    "kong.node.get_memory_stats": "plugin.StepMemoryStats",
    "kong.router.get_route": "plugin.StepRoute",
    "kong.router.get_service": "plugin.StepService",
    "kong.request.get_query": "plugin.StepMultiMap",
    "kong.request.get_headers": "plugin.StepMultiMap",
    "kong.response.get_headers": "plugin.StepMultiMap",
    "kong.service.response.get_headers": "plugin.StepMultiMap",
}
MAX_HEADERS = 100  # lua_max_req_headers: kong.request.get_headers() returns the first 100
TERMINAL = frozenset({"kong.response.exit", "kong.response.error"})


class LuaError(Exception):
    """A Lua error raised by a PDK function: Kong aborts the request with a 500."""


Headers = dict[str, Any]


@dataclass
class KongRequest:
    """A client request as Kong's PDK would see it in the access phase."""

    method: str = "GET"
    path: str = "/"  # the raw request target, query included ("/flights?x=1")
    headers: Headers = field(default_factory=dict)  # name -> str | bytes | list
    host: str = "localhost"
    service: dict[str, Any] | None = None
    route: dict[str, Any] | None = None
    consumer: dict[str, Any] | None = None  # authenticated by an earlier auth plugin
    credential: dict[str, Any] | None = None
    http_version: str = "1.1"
    request_line: str | None = None  # override $request (e.g. an absolute-form target)
    upstream_uri: str | None = None  # $upstream_uri after a route rewrote the path
    answers: dict[str, Any] = field(default_factory=dict)  # PDK method -> forced result
    body: str | bytes | None = None  # the request body (None: none)
    body_in_file: bool = False  # nginx spilled the body to a file (> client_body_buffer_size)
    chunked: bool = False  # the body came chunked: no Content-Length

    def __post_init__(self) -> None:
        # A client sends the length of its body (unless chunked).
        if self.body is not None and not self.chunked and not any(
                k.lower() == "content-length" for k in self.headers):
            raw = self.body.encode("utf-8", "surrogateescape") if isinstance(
                self.body, str) else self.body
            self.headers = {**self.headers, "Content-Length": str(len(raw))}


def fix_mmap(table: dict[str, Any]) -> dict[str, Any]:
    """mp_rpc.lua fix_mmap: string values become one-element lists, `true` an empty list."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        if v is True:
            out[k] = []
        elif isinstance(v, (str, bytes)):
            out[k] = [v]
        else:
            out[k] = list(v)
    return out


def lua_uri_args(raw: str) -> dict[str, Any]:
    """ngx.req.get_uri_args: `+` is space, a bare name is `true`, repeats become lists."""
    args: dict[str, Any] = {}
    for part in raw.split("&"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not name:
            continue
        key = _unescape(name)
        val: Any = _unescape(value) if eq else True
        if key in args:
            prev = args[key]
            args[key] = (prev if isinstance(prev, list) else [prev]) + [val]
        else:
            args[key] = val
    return args


def _unescape(s: str) -> str:
    return unquote_to_bytes(s.replace("+", " ")).decode("utf-8", "surrogateescape")


def _lower_headers(headers: Headers) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        out.setdefault(name.lower(), []).extend(values)
    return out


class KongPDK:
    """The PDK of one request: answers reads, records writes."""

    def __init__(self, req: KongRequest, consumers: list[dict[str, Any]]) -> None:
        self.req = req
        self.consumers = consumers
        raw_path, _, raw_query = req.path.partition("?")
        self.raw_path = raw_path
        self.raw_query = raw_query
        self.request_uri = req.path
        self.upstream_headers = _lower_headers(req.headers)  # ngx.req.set_header edits these
        self.upstream_query = raw_query
        self.upstream_path: str | None = None  # set by kong.service.request.set_path
        self.response_headers: dict[str, Any] = {}
        self.authenticated: tuple[Any, Any] | None = (
            (req.consumer, req.credential) if req.consumer or req.credential else None)
        self.exit: tuple[int, Any, dict[str, Any]] | None = None
        self.logs: list[tuple[str, str]] = []
        self.shared: dict[str, Any] = {}
        self.ctx: dict[str, Any] = {}  # ngx.ctx: what the Lua companions and get/set_ctx share
        self.serialized: dict[str, Any] = {}  # kong.log.set_serialize_value
        self.calls: list[str] = []

    # --- dispatch -------------------------------------------------------------------------

    def call(self, method: str, args: list[Any]) -> tuple[str, Any]:
        """Run one PDK call; returns (Step method name, result) as mp_rpc.lua would."""
        self.calls.append(method)
        if method in self.req.answers:
            return STEP_METHODS.get(method, "plugin.Step"), self.req.answers[method]
        fn = self._methods().get(method)
        if fn is None:
            if method.startswith("kong.log."):
                self.logs.append((method.rsplit(".", 1)[1], " ".join(map(str, args))))
                return "plugin.Step", None
            # call_pdk_method: "could not find pdk method", then a Step with nil Data.
            self.logs.append(("err", f"could not find pdk method: {method}"))
            return "plugin.Step", None
        result = fn(*args)
        if method in ("kong.request.get_headers", "kong.request.get_query",
                      "kong.response.get_headers", "kong.service.response.get_headers"):
            result = fix_mmap(result)
        return STEP_METHODS.get(method, "plugin.Step"), result

    def _methods(self) -> dict[str, Callable[..., Any]]:
        return {
            "kong.nginx.get_var": self.get_var,
            "kong.request.get_method": lambda: self.req.method,
            "kong.request.get_path": lambda: normalize_path(self.raw_path),
            "kong.request.get_raw_path": lambda: self.raw_path,
            "kong.request.get_path_with_query": lambda: self.request_uri,
            "kong.request.get_raw_query": lambda: self.raw_query,
            "kong.request.get_raw_body": self.get_raw_body,
            "kong.request.get_query": lambda *_: lua_uri_args(self.raw_query),
            "kong.request.get_headers": self.get_headers,
            "kong.request.get_header": self.get_header,
            "kong.request.get_host": lambda: self.req.host.lower().split(":")[0],
            "kong.request.get_scheme": lambda: "http",
            "kong.router.get_service": lambda: self.req.service,
            "kong.router.get_route": lambda: self.req.route,
            "kong.client.get_consumer": lambda: self.authenticated and self.authenticated[0],
            "kong.client.get_credential": lambda: self.authenticated and self.authenticated[1],
            "kong.client.load_consumer": self.load_consumer,
            "kong.client.authenticate": self.authenticate,
            "kong.service.request.set_header": lambda n, v: self.set_upstream({n: v}),
            "kong.service.request.set_headers": self.set_upstream,
            "kong.service.request.clear_header": lambda n: self.set_upstream({n: []}),
            "kong.service.request.set_raw_query": self.set_raw_query,
            "kong.service.request.set_path": self.set_path,
            "kong.response.set_header": lambda n, v: self.set_response({n: v}),
            "kong.response.set_headers": self.set_response,
            "kong.response.exit": self.do_exit,
            "kong.response.error": lambda status, msg=None, headers=None: self.do_exit(
                status, {"message": msg or "An unexpected error occurred"}, headers),
            "kong.nginx.get_ctx": lambda k: self.ctx.get(k),
            "kong.nginx.set_ctx": lambda k, v: self.ctx.__setitem__(k, v),
            "kong.log.set_serialize_value": self.set_serialize_value,
            "kong.ctx.shared.get": lambda k: self.shared.get(k),
            "kong.ctx.shared.set": lambda k, v: self.shared.__setitem__(k, v),
        }

    # --- reads ----------------------------------------------------------------------------

    def nginx_host(self) -> str:
        """nginx ``$host``: an absolute-form request line's host, else the Host header, else
        the server name; lower case, without the port (ngx_http_variable_host)."""
        line = self.req.request_line or ""
        target = line.split(" ")[1] if line.count(" ") >= 2 else ""
        if "://" in target:
            host = target.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        else:
            host = self.get_header("host") or self.req.host
        host = host.lower()
        if host.startswith("["):
            return host[: host.find("]") + 1]
        return host.split(":", 1)[0]

    def get_var(self, name: str) -> Any:
        """ngx.var.<name> for the variables a plugin may ask about."""
        if name == "request":
            if self.req.request_line is not None:
                return self.req.request_line
            proto = "HTTP/2.0" if self.req.http_version == "2" else f"HTTP/{self.req.http_version}"
            return f"{self.req.method} {self.request_uri} {proto}"
        return {
            "request_uri": self.request_uri,
            "request_method": self.req.method,
            "args": self.raw_query or None,
            # handler.lua: escape(the router's upstream uri); routes here never rewrite it
            "upstream_uri": self.req.upstream_uri or kong_escape(normalize_path(self.raw_path)),
            "host": self.nginx_host(),
            "http_host": self.get_header("host"),  # the Host header only (nil without one)
            "scheme": "http",
        }.get(name)

    def get_body_data(self) -> str | bytes | None:
        """ngx.req.get_body_data() after ngx.req.read_body(): nil when spilled or empty."""
        body = self.req.body
        return None if self.req.body_in_file or not body else body

    def get_body_file(self) -> str | None:
        """ngx.req.get_body_file(): the temporary file of a spilled body."""
        return "/tmp/nginx/client_body_temp/0000000001" if self.req.body_in_file else None

    def get_raw_body(self, max_allowed_file_size: Any = None) -> bytes:
        """kong/pdk/request.lua get_raw_body through Kong 3.9.1's RPC (mp_rpc.lua fix_raw).

        Packed as binary. A spilled body is read from its file only when
        ``max_allowed_file_size`` allows it; otherwise get_raw_body returns nil, which fix_raw
        cannot pack: a Lua error (the request is a 500).
        """
        data = self.get_body_data()
        if data is None and self.get_body_file() is not None:
            if not isinstance(max_allowed_file_size, int) or max_allowed_file_size < 0 or (
                    0 < max_allowed_file_size < len(self.req.body or b"")):
                raise LuaError("MessagePack.lua:126: attempt to get length of local 'str' "
                               "(a nil value)")
            data = self.req.body
        data = data or b""
        return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data

    def get_headers(self, max_headers: int | None = None) -> dict[str, Any]:
        """ngx.req.get_headers(): lower-case names, the first 100 header lines."""
        out: dict[str, Any] = {}
        count = 0
        for name, value in self.req.headers.items():
            for v in value if isinstance(value, list) else [value]:
                if count >= (max_headers or MAX_HEADERS):
                    return out
                count += 1
                key = name.lower()
                if key in out:
                    prev = out[key]
                    out[key] = (prev if isinstance(prev, list) else [prev]) + [v]
                else:
                    out[key] = v
        return out

    def get_header(self, name: str) -> Any:
        """First value of one request header."""
        v = self.get_headers().get(name.lower().replace("_", "-"))
        return v[0] if isinstance(v, list) else v

    def load_consumer(self, ref: str, by_username: bool = False) -> Any:
        """kong.client.load_consumer: by id, then (if asked) by username."""
        for c in self.consumers:
            if c.get("id") == ref:
                return c
        if by_username:
            for c in self.consumers:
                if c.get("username") == ref:
                    return c
        return None

    # --- writes ---------------------------------------------------------------------------

    def authenticate(self, consumer: Any = None, credential: Any = None) -> None:
        """kong.client.authenticate: tables or nil, at least one of them."""
        if consumer is None and credential is None:
            raise LuaError("either credential or consumer must be provided")
        for v in (consumer, credential):
            if v is not None and not isinstance(v, dict):
                raise LuaError("consumer and credential must be tables or nil")
        self.authenticated = (consumer, credential)

    def set_upstream(self, headers: dict[str, Any]) -> None:
        """kong.service.request.set_headers; an empty list clears the header (see adapter)."""
        _validate_headers(headers)
        for name, value in headers.items():
            values = value if isinstance(value, list) else [value]
            if values:
                self.upstream_headers[name.lower()] = [v if v != "" else " " for v in values]
            else:
                self.upstream_headers.pop(name.lower(), None)

    def set_raw_query(self, query: str) -> None:
        """kong.service.request.set_raw_query."""
        if not isinstance(query, str):
            raise LuaError("query must be a string")
        self.upstream_query = query

    def set_path(self, path: str) -> None:
        """kong.service.request.set_path: ngx.var.upstream_uri = escape(path)."""
        if not isinstance(path, str):
            raise LuaError("path must be a string")
        if not path.startswith("/"):
            raise LuaError("path must start with /")
        self.upstream_path = kong_escape(path)

    def set_response(self, headers: dict[str, Any]) -> None:
        """kong.response.set_headers."""
        _validate_headers(headers)
        for name, value in headers.items():
            if isinstance(value, list) and not value:
                self.response_headers.pop(name, None)
            else:
                self.response_headers[name] = value

    def set_serialize_value(self, key: Any, value: Any = None, options: Any = None) -> None:
        """kong.log.set_serialize_value (kong/pdk/log.lua): mode set, add or replace."""
        if not isinstance(key, str):
            raise LuaError("key must be a string")
        mode = (options or {}).get("mode") or "set"
        if mode not in ("set", "add", "replace"):
            raise LuaError("mode must be 'set', 'add' or 'replace'")
        if (mode == "add" and key in self.serialized) or (
                mode == "replace" and key not in self.serialized):
            return
        if value is None:
            self.serialized.pop(key, None)
        else:
            self.serialized[key] = value

    def do_exit(self, status: int, body: Any = None, headers: dict[str, Any] | None = None) -> None:
        """kong.response.exit: the request ends here."""
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise LuaError("code must be a number between 100 and 599")
        if headers is not None:
            _validate_headers(headers)
        self.exit = (status, body, dict(headers or {}))


def _validate_headers(headers: Any) -> None:
    # kong/pdk/private/checks.lua validate_headers
    if not isinstance(headers, dict):
        raise LuaError("headers must be a table")
    for k, v in headers.items():
        if not isinstance(k, str):
            raise LuaError(f"invalid header name {k!r}")
        if isinstance(v, list):
            if not all(isinstance(x, str) for x in v):
                raise LuaError(f"invalid header value in array {k!r}")
        elif not isinstance(v, (str, int, float, bool)):
            raise LuaError(f"invalid header value for {k!r}")
