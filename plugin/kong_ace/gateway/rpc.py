"""Kong's plugin-server RPC (MsgPack:1) for one plugin: instances, events and steps.

Kong's side is kong/runloop/plugin_servers/rpc/mp_rpc.lua: requests ``[0, id, method, [args]]``,
responses ``[1, id, error, result]``, notifications ``[2, label, args]``.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
from greenlet import greenlet

from kong_ace.gateway.drain import Connections, Tracked
from kong_ace.gateway.events import DEFAULT_TIMEOUT, ERROR_EXIT, TERMINAL, Event, GreenletEvent

log = logging.getLogger("kong_ace.gateway.server")

STEP_METHODS = frozenset(
    "plugin." + m
    for m in ("Step", "StepMultiMap", "StepCredential", "StepConsumer", "StepRoute",
              "StepService", "StepMemoryStats", "StepError")
)
EVENT_METHODS = STEP_METHODS | {"plugin.HandleEvent"}
EVENT_TTL = 300.0  # an event Kong never stepped again (its request died) is dropped after this
PRUNE_EVERY = 1024
# Kong drops its claim on an instance without CloseInstance when StartInstance fails, on "no
# plugin instance" and on a new serverPid (plugin.lua): such instances are closed here. One is
# superseded once a later instance of the same plugin id has a __seq__ at least as new; Kong
# numbers __seq__ per nginx worker, so a superseded instance may still be another worker's:
# it is closed only after INSTANCE_GRACE seconds without an event (Kong re-creates it on "no
# plugin instance" if it was still in use). Any instance is closed after INSTANCE_IDLE idle.
INSTANCE_GRACE = 60.0
INSTANCE_IDLE = 3600.0
MAX_MESSAGE = 64 * 1024 * 1024  # bytes of one RPC message at most (Kong's are far smaller)
REAP_EVERY = 1.0  # seconds between two looks for unreachable instances on the event path


class RPCError(Exception):
    """An error answer to Kong; the message is what Kong logs (or matches on)."""


@dataclass(eq=False)
class Instance:
    """One plugin instance Kong started: its plugin object and what tells when Kong dropped it."""

    plugin: Any
    config: dict[str, Any]
    start: float  # wall clock, for Kong's StartTime
    order: int  # start order in this process
    plugin_id: Any  # config.__plugin_id
    seq: Any  # config.__seq__ (unique per nginx worker and config generation)
    used: float  # monotonic time of its last HandleEvent (or its start)
    # phase -> (method, args, the call for Kong): the PDK call the plugin declares it makes
    # first in that phase (its ``first_calls``); HandleEvent answers it (events.py, defer).
    first_calls: dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]]


def first_calls(plugin: Any) -> dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """What ``plugin.first_calls`` (phase -> (method, args)) declares, for Instance."""
    return {phase: (method, tuple(args), {"Method": method, "Args": list(args)})
            for phase, (method, args) in (getattr(plugin, "first_calls", None) or {}).items()
            if method not in TERMINAL}  # a read only: Kong steps back with its answer


class PluginServer:
    """Instances and events of the plugin module ``module`` (Plugin, Schema, version, priority)."""

    def __init__(self, name: str, module: Any, event_type: type[Event],
                 event_timeout: float = DEFAULT_TIMEOUT, *,
                 instance_grace: float = INSTANCE_GRACE, instance_idle: float = INSTANCE_IDLE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.module = module
        self.event_type = event_type
        self.event_timeout = event_timeout
        self.instance_grace = instance_grace
        self.instance_idle = instance_idle
        self.clock = clock
        self.phases = [p for p in ("certificate", "rewrite", "log", "access", "preread",
                                   "response") if hasattr(module.Plugin, p)]
        self.instances: dict[int, Instance] = {}
        self.started = time.time()
        self.events: dict[int, Event] = {}
        self.reaped = 0  # instances closed because Kong could no longer reach them
        self.starting = 0  # StartInstance calls in progress (a draining server waits for them)
        self._lock = threading.Lock()
        # Ids start at a random base: after a restart Kong's stale ids must hit "no plugin
        # instance" (Kong then restarts its instance), never another config's instance; and a
        # Step for an event of the previous process must find no event here, never another
        # request's (Lua numbers are doubles: ids stay below 2**53).
        self._next_instance = random.randrange(1, 2**30)
        self._event_ids = itertools.count(random.randrange(1, 2**52))  # next() holds the GIL
        self._order = 0
        self._last_reap = clock()
        self.handlers: dict[str, Callable[..., Any]] = {
            "plugin.StartInstance": self.start_instance,
            "plugin.CloseInstance": self.close_instance,
            "plugin.HandleEvent": self.handle_event,
            "plugin.GetStatus": self.get_status,
            "plugin.GetPluginInfo": self.get_plugin_info,
            "plugin.SetPluginDir": lambda *_: "ok",
            **{m: self.step for m in STEP_METHODS},
            "plugin.StepError": self.step_error,
        }
        # The methods of every request, taking their one argument (Connection.answer).
        self.event_calls: dict[str, Callable[[Any], Any]] = {
            "plugin.HandleEvent": self.handle_event, "plugin.Step": self.step}

    # --- plugin info ----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The plugin-info record Kong reads from the query command."""
        return {
            "Name": self.name,
            "Phases": self.phases,
            "Priority": self.module.priority,
            "Version": self.module.version,
            "Schema": {
                "name": self.name,
                "fields": [{"config": {"type": "record", "fields": list(self.module.Schema)}}],
            },
        }

    def get_plugin_info(self, name: str) -> dict[str, Any]:
        """plugin.GetPluginInfo."""
        if name != self.name:
            raise RPCError(f"{name} not initialized")
        return self.info()

    def get_status(self, *_: Any) -> dict[str, Any]:
        """plugin.GetStatus; ``Compiled`` counts the compiled configs in use.

        Keys are only ever added (metrics read them): ``Reaped`` counts instances closed because
        Kong could no longer reach them; the module's ``config_status`` adds ``Rejected`` (each
        plugin's latest config ACE rejected: hash, error, time, the config served instead),
        ``Failures``, ``Compiles`` and ``CompiledIdle``.
        """
        compiled = getattr(self.module, "compiled_count", None)
        config_status = getattr(self.module, "config_status", None)
        instances = list(self.instances.items())  # a copy: the reaper may close some meanwhile
        plugin = {"Name": self.name, "Instances": [self._status(i, inst) for i, inst in instances],
                  "Events": len(self.events), "Compiled": compiled() if compiled else None,
                  "Reaped": self.reaped}
        if config_status is not None:
            plugin.update(config_status())
        return {"Pid": os.getpid(), "Plugins": {self.name: plugin},
            # For leak checks (tests/hardening): live greenlets and OS threads of the process.
            "Greenlets": sum(isinstance(o, greenlet) for o in gc.get_objects()),
            "Threads": threading.active_count(),
            "StartTime": self.started, "Uptime": time.time() - self.started}

    # --- instances ------------------------------------------------------------------------

    def start_instance(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """plugin.StartInstance {Name, Config: json}: a bad config answers its message."""
        name = cfg.get("Name") if isinstance(cfg, dict) else None
        if name != self.name:
            raise RPCError(f"{name} not initialized")
        text = cfg.get("Config")
        with self._lock:
            self.starting += 1
        try:
            if not isinstance(text, (str, bytes)):
                raise ValueError("Config must be a JSON string")
            config = json.loads(text)
            plugin = self.module.Plugin(config)
        except ValueError as exc:  # ConfigError (and JSON shape errors) name the place
            if not getattr(exc, "logged", False):  # the compiled cache logs each rejection once
                log.error("%s: rejected config: %s", self.name, exc)
            raise RPCError(f"{self.name}: invalid configuration: {exc}") from None
        finally:
            with self._lock:
                self.starting -= 1
        now = self.clock()
        meta = config if isinstance(config, dict) else {}
        with self._lock:
            iid = self._next_instance
            self._next_instance += 1
            self._order += 1
            self.instances[iid] = Instance(plugin, config, time.time(), self._order,
                                           meta.get("__plugin_id"), meta.get("__seq__"), now,
                                           first_calls(plugin))
        log.info("instance #%d of %s started", iid, self.name)
        self.reap(now)
        return {"Name": self.name, "Id": iid, "Config": config, "StartTime": time.time()}

    def close_instance(self, iid: int) -> dict[str, Any]:
        """plugin.CloseInstance id."""
        with self._lock:
            inst = self.instances.pop(iid, None)
        if inst is None:
            # Kong retries (and restarts the instance) only on this prefix.
            raise RPCError(f"no plugin instance #{iid}")
        self._close(iid, inst)
        return {"Name": self.name, "Id": iid, "Config": inst.config}

    def _close(self, iid: int, inst: Instance) -> None:
        # An event already running keeps what its handler read at its start (plugin.py reads
        # its compiled config once), so closing under it is safe.
        close = getattr(inst.plugin, "close", None)
        if close is not None:
            close()
        log.info("instance #%d of %s closed", iid, self.name)

    def reap(self, now: float) -> list[int]:
        """Close the instances Kong can no longer reach (see INSTANCE_GRACE); their ids."""
        self._last_reap = now
        with self._lock:
            newest: dict[Any, list[Instance]] = {}
            for inst in self.instances.values():
                newest.setdefault(inst.plugin_id, []).append(inst)
            doomed = [iid for iid, inst in self.instances.items()
                      if self._unreachable(inst, newest[inst.plugin_id], now)]
            closed = [(iid, self.instances.pop(iid)) for iid in doomed]
            self.reaped += len(closed)
        for iid, inst in closed:
            log.info("instance #%d of %s (plugin %s, seq %s) unused for %.0fs: closing it",
                     iid, self.name, inst.plugin_id, inst.seq, now - inst.used)
            self._close(iid, inst)
        return doomed

    def _unreachable(self, inst: Instance, same_plugin: list[Instance], now: float) -> bool:
        idle = now - inst.used
        if idle >= self.instance_idle:
            return True
        if idle < self.instance_grace:
            return False
        return any(other.order > inst.order and _seq_at_least(other.seq, inst.seq)
                   for other in same_plugin)

    def _status(self, iid: int, inst: Instance) -> dict[str, Any]:
        extra = getattr(inst.plugin, "status", None)  # the plugin's own view (its config hash)
        return {"Name": self.name, "Id": iid, "StartTime": inst.start,
                "PluginId": inst.plugin_id, "Seq": inst.seq,
                "IdleSeconds": round(self.clock() - inst.used, 3),
                **(extra() if extra else {})}

    def drained(self) -> bool:
        """True when no event is in flight and no instance is being started."""
        return not self.events and self.starting == 0

    # --- events ---------------------------------------------------------------------------

    # Kong lets the request through when HandleEvent or Step answers an error (other than
    # "no plugin instance"): every failure here answers kong.response.exit(500) instead.

    def handle_event(self, ev: dict[str, Any]) -> dict[str, Any]:
        """plugin.HandleEvent {InstanceId, EventName}: run the phase to its first PDK call."""
        iid = ev.get("InstanceId")
        inst = self.instances.get(iid)  # type: ignore[arg-type]
        if inst is None:
            raise RPCError(f"no plugin instance #{iid}")
        now = self.clock()
        inst.used = now
        eid = next(self._event_ids)
        if eid % PRUNE_EVERY == 0:
            self._prune()
        if now - self._last_reap >= REAP_EVERY:
            self.reap(now)
        phase = ev.get("EventName")
        if phase not in self.phases:
            log.error("%s has no phase %r; answering 500", self.name, phase)
            return {"Data": ERROR_EXIT, "EventId": eid}
        event = self.event_type(eid, getattr(inst.plugin, phase), self.event_timeout)
        self.events[eid] = event
        first = inst.first_calls.get(phase)
        if first is not None:
            event.defer(first[0], first[1])
            return {"Data": first[2], "EventId": eid}
        done, data = event.start()
        if done:
            self.events.pop(eid, None)
        return {"Data": data, "EventId": eid}

    def step(self, data: dict[str, Any], err: Any = None) -> dict[str, Any]:
        """plugin.Step* {EventId, Data}: the result of the pending PDK call."""
        eid = data.get("EventId")
        event = self.events.get(eid)  # type: ignore[arg-type]
        if event is None:
            if type(eid) is int:
                # Another server process started it: during a restart Kong's pool holds
                # connections to both, and a Step may go to the other one. Kong restarts the
                # phase on this answer (mp_rpc.lua handle_event), a fresh decision on one
                # server, where a 500 would fail a request the old server was deciding.
                log.warning("step for unknown event %s (started by another server process); "
                            "Kong restarts the phase", eid)
                raise RPCError(f"no plugin instance for event {eid}: started by another "
                               "server process")
            log.error("step for unknown event %r; answering 500", eid)
            return {"Data": ERROR_EXIT, "EventId": eid}
        done, out = event.resume(data.get("Data"), err)
        if done:
            self.events.pop(eid, None)
        return {"Data": out, "EventId": eid}

    def step_error(self, data: dict[str, Any]) -> dict[str, Any]:
        """plugin.StepError: Kong 3.x never sends it, older Kongs did."""
        return self.step(data, data.get("Data") or "error")

    def fail_event(self, eid: Any) -> dict[str, Any]:
        """Drop event ``eid`` and answer Kong with a 500 exit for it."""
        event = self.events.pop(eid, None)
        if event is not None:
            event.cancel()
        return {"Data": ERROR_EXIT, "EventId": eid}

    def _prune(self) -> None:
        limit = time.monotonic() - EVENT_TTL
        for eid, event in list(self.events.items()):
            if event.created < limit:
                self.events.pop(eid, None)
                event.cancel()

    # --- dispatch -------------------------------------------------------------------------

    def dispatch(self, method: Any, args: Any) -> Any:
        """Call the handler of ``method``; raise RPCError for Kong."""
        handler = self.handlers.get(method) if isinstance(method, str) else None
        if handler is None:
            raise RPCError(f"RPC method {method!r} is not supported")
        if type(args) is not list:
            args = [args]
        if method in EVENT_METHODS:
            try:
                return handler(*args)
            except RPCError:
                raise
            except Exception:  # noqa: BLE001 - fail closed, see handle_event
                return self.event_failed(method, args)
        return handler(*args)

    def event_failed(self, method: str, args: list[Any]) -> dict[str, Any]:
        """An event method raised (a bug): log it, answer a 500 exit for its event."""
        log.exception("%s failed; answering 500", method)
        eid = args[0].get("EventId") if args and isinstance(args[0], dict) else None
        return self.fail_event(eid)


def _seq_at_least(newer: Any, older: Any) -> bool:
    # __seq__ is an integer from a shared counter (plugins_iterator.lua get_plugin_config);
    # anything else (an old Kong, a test) counts as superseded by any later start.
    if isinstance(newer, int) and isinstance(older, int):
        return newer >= older
    return True


class Connection:
    """One Kong connection: frames, dispatches, answers; survives any single bad message."""

    def __init__(self, sock: Any, server: PluginServer,
                 connections: Connections | None = None) -> None:
        self.sock = sock
        self.server = server
        self.connections = connections  # a draining server pokes these (drain.py)
        # Lua strings are bytes: header values need not be UTF-8. surrogateescape keeps them
        # (and writes them back unchanged) instead of failing the whole connection. msgpack's
        # strict UTF-8 codec is ~2 us a message faster, so a connection starts with it and
        # turns to surrogateescape for good at its first message that is not UTF-8.
        self.unpacker = _unpacker(escaping=False)
        self.escaping = False
        self.packer = msgpack.Packer(unicode_errors="surrogateescape")
        self._pack = msgpack.Packer().pack
        self._escape_pack = self.packer.pack
        # The event methods (three messages per request) skip dispatch()'s generic checks;
        # what they do on failure is the same (see answer()).
        self._event_calls = server.event_calls

    def serve(self) -> None:
        """Serve requests until Kong closes the connection."""
        sock = self.sock
        # Kong resets its instances when the server pid it last saw changes (mp_rpc.lua).
        sock.sendall(self._pack([2, "serverPid", os.getpid()]))
        recv, send = socket_io(sock)
        tracked = Tracked(sock, send,
                          threaded=not issubclass(self.server.event_type, GreenletEvent))
        if self.connections is not None:
            self.connections.add(tracked)
        answer = self.answer
        fed = done = base = self.unpacker.tell()  # offsets in the unpacker's stream:
        # fed: bytes fed to it; done: after the last whole message; base: where ``kept``
        # starts, the bytes fed since a point where no message was partly read
        kept: bytes | bytearray = b""  # a bytearray while a message is partly read: a large
        # one comes in many chunks, and appending to bytes would copy it all each time
        try:
            while True:
                chunk = recv(65536)
                if not chunk:
                    return
                tracked.took()
                fed += len(chunk)
                if kept:
                    kept += chunk  # type: ignore[operator]  # a bytearray: in place
                else:
                    kept = chunk
                unpacker = self.unpacker
                unpacker.feed(chunk)
                while True:
                    try:
                        for msg in unpacker:
                            send(answer(msg))  # busy: no poke can come between
                            done = unpacker.tell()
                            if done == fed:
                                # All read: asking for more would raise (and the unpacker
                                # build a traceback) each time, ~3k instructions a message.
                                break
                    except UnicodeDecodeError as exc:
                        if self.escaping:  # cannot happen with surrogateescape: never loop
                            log.error("malformed RPC stream, closing connection: %s", exc)
                            return
                        # Not UTF-8: decode this message and the rest with surrogateescape.
                        kept = bytearray(memoryview(kept)[done - base:])
                        unpacker = self.unpacker = _unpacker(escaping=True)
                        self.escaping = True
                        unpacker.feed(kept)
                        fed, done, base = len(kept), 0, 0
                        continue
                    except (ValueError, msgpack.UnpackException) as exc:
                        # The stream itself is broken: no way to find the next message boundary.
                        log.error("malformed RPC stream, closing connection: %s", exc)
                        return
                    break
                if done == fed:
                    kept = b""
                    base = fed
                    tracked.partial = False
                else:
                    if type(kept) is bytearray:
                        del kept[:done - base]
                    else:
                        kept = bytearray(memoryview(kept)[done - base:])
                    base = done
                    tracked.partial = True
                tracked.busy = False
        finally:
            if self.connections is not None:
                self.connections.remove(tracked)

    def answer(self, msg: Any) -> bytes:
        """The encoded response to one request message."""
        if not (type(msg) is list and len(msg) == 4 and msg[0] == 0):
            log.error("ignoring a message that is not an RPC request")
            return b""
        _, msgid, method, args = msg
        call = self._event_calls.get(method) if type(method) is str else None
        try:
            if call is not None and type(args) is list and len(args) == 1:
                # dispatch() for one of the event methods, without its generic checks.
                try:
                    result = call(args[0])
                except RPCError:
                    raise
                except Exception:  # noqa: BLE001 - fail closed, see handle_event
                    result = self.server.event_failed(method, args)
            else:
                result = self.server.dispatch(method, args)
            reply = [1, msgid, None, result]
        except RPCError as exc:
            reply = [1, msgid, str(exc), None]
        except Exception as exc:  # noqa: BLE001 - answer Kong, keep the connection
            log.exception("rpc #%s %s failed", msgid, method)
            reply = [1, msgid, f"{self.server.name}: internal error: {type(exc).__name__}", None]
        try:
            try:
                return self._pack(reply)  # type: ignore[no-any-return]
            except UnicodeEncodeError:  # a str from a non-UTF-8 Lua string, written back
                return self._escape_pack(reply)  # type: ignore[no-any-return]
        except Exception as exc:  # noqa: BLE001 - e.g. a PDK argument msgpack cannot encode
            log.error("rpc #%s %s: cannot encode the reply: %s", msgid, method, exc)
            result = reply[3]
            if isinstance(result, dict) and "EventId" in result:
                return self.packer.pack([1, msgid, None,
                                         self.server.fail_event(result["EventId"])])
            return self.packer.pack([1, msgid, f"{self.server.name}: cannot encode reply", None])


def _unpacker(*, escaping: bool) -> msgpack.Unpacker:
    if escaping:
        return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape",
                                strict_map_key=False, max_buffer_size=MAX_MESSAGE)
    return msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=MAX_MESSAGE)


def socket_io(sock: Any) -> tuple[Callable[[int], bytes], Callable[[bytes], None]]:
    """(recv, sendall) for a connection; on a gevent socket, with two syscalls less per RPC.

    Kong sends its next message only after reading our answer, so a first non-blocking recv
    nearly always fails: wait for readability first, then read once. gevent's sendall asks
    the kernel for SO_SNDBUF on every call; a reply fits the socket buffer, so send it directly
    and fall back to sendall for a remainder.
    """
    raw = getattr(sock, "_sock", None)
    wait = getattr(sock, "_wait", None)
    readable = getattr(sock, "_read_event", None)
    if raw is None or wait is None or readable is None or sock.timeout is not None:
        return sock.recv, sock.sendall  # a plain socket (threading mode)

    def recv(size: int) -> bytes:
        while True:
            wait(readable)
            try:
                return raw.recv(size)  # type: ignore[no-any-return]
            except BlockingIOError:
                continue  # a spurious wake-up

    def sendall(data: bytes) -> None:
        try:
            sent = raw.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            sock.sendall(memoryview(data)[sent:])

    return recv, sendall
