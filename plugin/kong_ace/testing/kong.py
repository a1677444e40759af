"""A Kong node as the plugin server sees it: workers, plugin instances and the event loop.

Written from Kong's Lua side (kong/runloop/plugin_servers/):

- plugin.lua ``get_instance_id``: each nginx worker keeps its own ``running_instances`` keyed
  by the plugin id; an instance is reused while ``conf.__seq__`` is unchanged; otherwise the
  worker calls StartInstance and then CloseInstance on the old id (errors ignored). A failed
  StartInstance is ``error(err)``: that request fails with a 500.
- mp_rpc.lua ``bridge_loop``: HandleEvent, then for each returned call run the PDK method and
  send its result with the typed Step method, until Data is "ret". ``kong.response.exit``
  ends the request inside Kong: nothing is sent back.
- mp_rpc.lua ``handle_event``: an error containing "no plugin instance" resets the worker's
  instance and retries; any other error is logged and the request goes on (fails open).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from kong_ace.core.normalize import normalize_path
from kong_ace.gateway.request_line import kong_escape
from kong_ace.testing.pdk import TERMINAL, KongPDK, KongRequest, LuaError
from kong_ace.testing.rpc import KongRPC, RPCFailure

UNEXPECTED = {"message": "An unexpected error occurred"}
MAX_RETRIES = 3  # Kong retries "no plugin instance" without bound; a test harness must not


@dataclass
class Result:
    """What happened to one request."""

    status: int
    body: Any = None
    headers: dict[str, Any] = field(default_factory=dict)  # response headers
    proxied: bool = False
    upstream_headers: dict[str, list[Any]] = field(default_factory=dict)
    upstream_query: str = ""
    upstream_path: str = ""  # the path Kong forwards: escape(normalised path) unless set_path
    consumer: Any = None  # the authenticated consumer after the plugin ran
    pdk_calls: list[str] = field(default_factory=list)  # every PDK call, exit included
    rpc_calls: int = 0  # HandleEvent + Steps: the socket round trips of this request
    errors: list[str] = field(default_factory=list)  # what Kong would log at error level
    logs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def message(self) -> Any:
        """The JSON body's message."""
        return self.body.get("message") if isinstance(self.body, dict) else None

    def upstream(self, name: str) -> Any:
        """The first value of an upstream request header, or None."""
        v = self.upstream_headers.get(name.lower())
        return v[0] if v else None


class KongWorker:
    """One nginx worker: its own RPC connection and its own running_instances table."""

    def __init__(self, node: KongNode, index: int) -> None:
        self.node = node
        self.index = index
        self.rpc = KongRPC(node.socket, fresh_connections=node.fresh_connections)
        self.conf = node.plugin_conf  # workers pick up a new config each at their own time
        self.running: dict[str, dict[str, Any]] = {}
        self.started: list[int] = []
        self.closed: list[int] = []

    def instance_id(self, conf: dict[str, Any]) -> int:
        """plugin.lua get_instance_id."""
        key = conf["__plugin_id"]
        info = self.running.get(key)
        if info and info.get("id") is not None and info["seq"] == conf["__seq__"]:
            return info["id"]  # type: ignore[no-any-return]
        old = info.get("id") if info else None
        self.node.rpc_total += 1
        try:
            status = self.rpc.call("plugin.StartInstance",
                                   {"Name": self.node.plugin_name, "Config": json.dumps(conf)})
        except RPCFailure:
            self.running.pop(key, None)
            raise
        self.running[key] = {"id": status["Id"], "seq": conf["__seq__"]}
        self.started.append(status["Id"])
        if old is not None:
            self.node.rpc_total += 1
            try:
                self.rpc.call("plugin.CloseInstance", old)
                self.closed.append(old)
            except RPCFailure:
                pass  # "don't care if there's an error, maybe other thread closed it first"
        return status["Id"]  # type: ignore[no-any-return]

    def handle(self, req: KongRequest) -> Result:
        """Run the access phase of the plugin for ``req`` (mp_rpc.lua handle_event)."""
        conf = self.conf
        pdk = KongPDK(req, self.node.consumers)
        result = Result(status=0)
        for _attempt in range(MAX_RETRIES + 1):
            try:
                iid = self.instance_id(conf)
            except RPCFailure as exc:
                # error(err) in get_instance_id: the request fails with Kong's 500.
                result.errors.append(f"starting instance: {exc}")
                return self._finish(result, pdk, failed=True)
            try:
                self._bridge_loop(iid, pdk, result)
            except RPCFailure as exc:
                if "no plugin instance" in str(exc).lower():
                    self.running.pop(conf["__plugin_id"], None)
                    result.logs.append(("warn", str(exc)))
                    continue
                result.errors.append(str(exc))  # kong.log.err(err): the request goes on
            except LuaError as exc:
                result.errors.append(f"PDK error: {exc}")
                return self._finish(result, pdk, failed=True)
            return self._finish(result, pdk)
        result.errors.append("gave up after repeated 'no plugin instance'")
        return self._finish(result, pdk)

    def _bridge_loop(self, iid: int, pdk: KongPDK, result: Result) -> None:
        result.rpc_calls += 1
        self.node.rpc_total += 1
        step = self.rpc.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
        event_id = step["EventId"]
        while step.get("Data") != "ret":
            call = step["Data"]
            method, args = call["Method"], call.get("Args") or []
            result.pdk_calls.append(method)
            step_method, value = pdk.call(method, args)
            if method in TERMINAL:
                return  # ngx.exit: the coroutine ends, no Step is sent
            msg: dict[str, Any] = {"EventId": event_id}
            if value is not None:  # a Lua table drops nil values: no "Data" key at all
                msg["Data"] = value
            result.rpc_calls += 1
            self.node.rpc_total += 1
            step = self.rpc.call(step_method, msg)

    def _finish(self, result: Result, pdk: KongPDK, failed: bool = False) -> Result:
        result.logs += pdk.logs
        result.consumer = pdk.authenticated[0] if pdk.authenticated else None
        if failed:
            result.status, result.body = 500, dict(UNEXPECTED)
        elif pdk.exit is not None:
            result.status, result.body, result.headers = pdk.exit[0], pdk.exit[1], pdk.exit[2]
        else:
            result.status, result.proxied = 200, True
            result.headers = dict(pdk.response_headers)
            result.upstream_headers = pdk.upstream_headers
            result.upstream_query = pdk.upstream_query
            result.upstream_path = pdk.upstream_path or kong_escape(normalize_path(pdk.raw_path))
        return result


class KongNode:
    """A Kong node with one global plugin entity handled by a plugin server on ``socket``."""

    def __init__(self, socket: str, config: dict[str, Any], *, workers: int = 2,
                 plugin_name: str = "ace", consumers: list[dict[str, Any]] | None = None,
                 fresh_connections: bool = False) -> None:
        self.socket = socket
        self.plugin_name = plugin_name
        self.fresh_connections = fresh_connections
        self.plugin_id = str(uuid.uuid4())
        self.seq = 0
        self.consumers = consumers or []
        self.rpc_total = 0
        self.plugin_conf: dict[str, Any] = {}
        self.workers: list[KongWorker] = []
        self.configure(config)
        self.workers = [KongWorker(self, i) for i in range(workers)]

    def configure(self, config: dict[str, Any], *, workers: list[int] | None = None) -> None:
        """A config change: same plugin id, new ``__seq__`` (what Kong's plugins iterator adds).

        ``workers`` limits which workers have seen the change yet (all by default).
        """
        self.seq += 1
        self.plugin_conf = {
            **config,
            "__plugin_id": self.plugin_id,
            "__key__": f"plugins:{self.plugin_name}::::{self.plugin_id}",
            "__seq__": self.seq,
            "route_id": None,
            "service_id": None,
            "consumer_id": None,
        }
        for w in self.workers:
            if workers is None or w.index in workers:
                w.conf = self.plugin_conf

    def request(self, req: KongRequest | None = None, *, worker: int = 0, **kw: Any) -> Result:
        """Send one request through worker ``worker``."""
        return self.workers[worker].handle(req if req is not None else KongRequest(**kw))

    def close(self) -> None:
        """Close every worker's connection."""
        for w in self.workers:
            w.rpc.close()
