"""A Kong node as the plugin server sees it: workers, plugin instances and the event loop.

Written from Kong's Lua side (kong/runloop/plugin_servers/):

- plugins_iterator.lua ``get_plugin_config``: each worker builds its own copy of the plugin's
  processed config and adds ``__plugin_id``, ``__key__``, ``__ws_id``, ``plugin_instance_name``
  (when set), ``route_id``/``service_id``/``consumer_id`` (when scoped; absent otherwise) and
  ``__seq__`` from a counter shared by the workers: two workers never send the same ``__seq__``.
- plugin.lua ``get_instance_id``: each nginx worker keeps its own ``running_instances`` keyed
  by the plugin id; an instance is reused while ``conf.__seq__`` is unchanged; otherwise the
  worker claims the key, calls StartInstance and then CloseInstance on the old id (errors
  ignored). A failed StartInstance removes the claim (the old id is never closed) and is
  ``error(err)``: that request fails with a 500.
- plugin.lua ``rpc_notifications:serverPid``: a new server pid resets the worker's instances.
- mp_rpc.lua ``bridge_loop``: HandleEvent, then for each returned call run the PDK method and
  send its result with the typed Step method, until Data is "ret". ``kong.response.exit``
  ends the request inside Kong: nothing is sent back.
- mp_rpc.lua ``handle_event``: an error containing "no plugin instance" resets the instances of
  the plugin in every worker (a worker event) and retries, without bound; any other error is
  logged and the request goes on (fails open); a Lua error in Rpc:call is a 500.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from kong_ace.core.normalize import normalize_path
from kong_ace.gateway.request_line import kong_escape
from kong_ace.testing import companions, nginx
from kong_ace.testing.pdk import TERMINAL, KongPDK, KongRequest, LuaError
from kong_ace.testing.rpc import KongRPC, RPCAbort, RPCFailure
from kong_ace.testing.schema import Resolver, env_vault, process

UNEXPECTED = {"message": "An unexpected error occurred"}
# Kong retries "no plugin instance" without bound (handle_event calls itself); the harness
# stops only after this many, so a server that always answers it fails a test instead of
# hanging it.
MAX_RETRIES = 1000


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
    serialized: dict[str, Any] = field(default_factory=dict)  # kong.log.set_serialize_value

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
        self.rpc = KongRPC(node.socket, fresh_connections=node.fresh_connections,
                           on_new_server=self._new_server)
        self.conf = node.worker_conf()  # workers pick up a new config each at their own time
        self.running: dict[str, dict[str, Any]] = {}
        self.started: list[int] = []
        self.closed: list[int] = []
        self.resets = 0  # times this worker's instances were forgotten (no plugin instance, pid)

    def _new_server(self, _pid: int) -> None:
        # rpc_notifications:serverPid: every instance started through this Rpc is gone.
        self.reset()

    def reset(self) -> None:
        """Forget every running instance (reset_instances_for_plugin)."""
        self.running.clear()
        self.resets += 1

    def instance_id(self, conf: dict[str, Any]) -> int:
        """plugin.lua get_instance_id."""
        key = conf["__plugin_id"]
        info = self.running.get(key)
        if (info and info.get("id") is not None and info["seq"] == conf["__seq__"]
                and info["conf"].get("__plugin_id") == key):
            return info["id"]  # type: ignore[no-any-return]
        old = info.get("id") if info else None
        if info is None:
            info = self.running[key] = {"conf": conf, "seq": conf["__seq__"]}  # our claim
        else:
            info["id"] = None  # "make it evident that we're changing it"
        self.node.rpc_total += 1
        try:
            status = self.rpc.call("plugin.StartInstance",
                                   {"Name": self.node.plugin_name, "Config": json.dumps(conf)})
        except RPCFailure:
            self.running.pop(key, None)  # remove the claim; the old id is never closed
            raise
        info.update(id=status["Id"], conf=conf, seq=conf["__seq__"])
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
        """Run the access phase of the plugin for ``req`` (mp_rpc.lua handle_event).

        With the node's ``companions``, ace-context (956) runs before the plugin and ace-guard
        (954) after it, unless the request already ended (an exit, or a Lua error's 500).
        """
        if self.node.nginx and nginx.refuses(*self._request_line(req)):
            return Result(status=400, body=nginx.BAD_REQUEST)  # no Kong phase runs
        pdk = KongPDK(req, self.node.consumers)
        result = Result(status=0)
        if self.node.companions:
            companions.context(pdk)
        failed = self._run(pdk, result)
        if self.node.companions and not failed and pdk.exit is None:
            try:
                companions.guard(pdk)
            except LuaError as exc:
                result.errors.append(f"ace-guard: {exc}")
                failed = True
        return self._finish(result, pdk, failed=failed)

    @staticmethod
    def _request_line(req: KongRequest) -> tuple[str, str]:
        """(method, target) as on the request line nginx parses."""
        parts = (req.request_line or "").split(" ")
        if len(parts) >= 3:
            return parts[0], " ".join(parts[1:-1])
        return req.method, req.path

    def _run(self, pdk: KongPDK, result: Result) -> bool:
        """The plugin's access handler; True when Kong fails the request with a 500."""
        conf = self.conf
        for _attempt in range(MAX_RETRIES + 1):
            try:
                iid = self.instance_id(conf)
            except RPCFailure as exc:
                # error(err) in get_instance_id: the request fails with Kong's 500.
                result.errors.append(f"starting instance: {exc}")
                return True
            except RPCAbort as exc:
                result.errors.append(f"starting instance: {exc}")
                return True
            try:
                self._bridge_loop(iid, pdk, result)
            except RPCFailure as exc:
                if "no plugin instance" in str(exc).lower():
                    # reset_instance: this worker at once, every other one by a worker event.
                    self.node.reset_instances()
                    result.logs.append(("warn", str(exc)))
                    continue
                result.errors.append(str(exc))  # kong.log.err(err): the request goes on
            except RPCAbort as exc:
                result.errors.append(f"Lua error: {exc}")  # raised in Rpc:call: a 500
                return True
            except LuaError as exc:
                result.errors.append(f"PDK error: {exc}")
                return True
            return False
        result.errors.append("gave up after repeated 'no plugin instance'")
        return False

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
        result.serialized = pdk.serialized
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
    """A Kong node with one global plugin entity handled by a plugin server on ``socket``.

    ``schema`` is the plugin's config record (ace's by default) used to process configs as Kong
    does; ``vault`` resolves ``{vault://env/...}`` references (the process environment by
    default); ``raw=True`` sends configs unprocessed.
    """

    def __init__(self, socket: str, config: dict[str, Any], *, workers: int = 2,
                 plugin_name: str = "ace", consumers: list[dict[str, Any]] | None = None,
                 fresh_connections: bool = False, schema: dict[str, Any] | None = None,
                 vault: dict[str, str] | None = None, instance_name: str | None = None,
                 raw: bool = False, companions: bool = False, nginx: bool = True) -> None:
        self.socket = socket
        # nginx's own 400 for request lines it cannot parse (testing/nginx.py); the hostile-
        # request suites turn it off to send the server what nginx would never pass.
        self.nginx = nginx
        self.companions = companions  # run the Lua companions around the plugin (SPEC §9)
        self.plugin_name = plugin_name
        self.fresh_connections = fresh_connections
        self.plugin_id = str(uuid.uuid4())
        self.ws_id = str(uuid.uuid4())
        self.instance_name = instance_name
        self.seq = 0  # ngx.shared.kong "plugins_iterator:__seq__"
        self._seq_lock = threading.Lock()
        self.consumers = consumers or []
        self.rpc_total = 0
        self.schema = schema if schema is not None else _ace_schema()
        self.resolve: Resolver = env_vault(vault)
        self.raw = raw
        self.processed: Any = {}  # the processed config, without the keys Kong adds per worker
        self.plugin_conf: dict[str, Any] = {}  # the latest worker copy, keys included
        self.schema_errors: dict[str, str] = {}  # what Kong's own validation would refuse
        self.workers: list[KongWorker] = []
        self.configure(config)
        self.workers = [KongWorker(self, i) for i in range(workers)]

    def configure(self, config: dict[str, Any], *, workers: list[int] | None = None) -> None:
        """A config change: same plugin id; each worker rebuilds its plugins iterator.

        ``workers`` limits which workers have seen the change yet (all by default).
        """
        if self.raw or not isinstance(config, dict):
            processed, self.schema_errors = config, {}
        else:
            processed, self.schema_errors = process(config, self.schema, self.resolve)
        self.processed = processed
        self.plugin_conf = self.worker_conf()
        for w in self.workers:
            if workers is None or w.index in workers:
                w.conf = self.worker_conf()

    def worker_conf(self) -> dict[str, Any]:
        """One worker's copy of the plugin config, with the keys Kong adds (get_plugin_config)."""
        with self._seq_lock:
            self.seq += 1
            seq = self.seq
        conf = dict(self.processed) if isinstance(self.processed, dict) else {}
        conf.update({
            "__plugin_id": self.plugin_id,
            "__ws_id": self.ws_id,
            "__key__": f"plugins:{self.plugin_name}:::::{self.ws_id}",
            "__seq__": seq,
        })
        if self.instance_name is not None:
            conf["plugin_instance_name"] = self.instance_name
        return conf

    def reset_instances(self) -> None:
        """reset_instance: every worker forgets its instances of the plugin (worker event)."""
        for w in self.workers:
            w.reset()

    def request(self, req: KongRequest | None = None, *, worker: int = 0, **kw: Any) -> Result:
        """Send one request through worker ``worker``."""
        return self.workers[worker].handle(req if req is not None else KongRequest(**kw))

    def close(self) -> None:
        """Close every worker's connection."""
        for w in self.workers:
            w.rpc.close()


def _ace_schema() -> dict[str, Any]:
    from kong_ace.gateway.schema import config_record

    return config_record()
