"""Kong's msgpack-RPC client side (kong/runloop/plugin_servers/rpc/mp_rpc.lua, ``Rpc:call``)."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import Any

import msgpack

# Kong sets no timeout of its own on the plugin-server socket: nginx's lua_socket_connect,
# send and read timeouts apply, 60 s by default.
KONG_SOCKET_TIMEOUT = 60.0


class RPCFailure(Exception):
    """The plugin server answered an error, or the connection failed ("no data").

    Rpc:call returns ``nil, err``: Kong logs it and the request goes on (fails open).
    """


class RPCAbort(Exception):
    """A Lua error raised inside Rpc:call: Kong answers the request 500.

    A reply cut by EOF (MessagePack.lua's unpacker errors on the truncated object), a response
    with another request's msg id, or a message that is not a response (the ``assert``s).
    """


class KongRPC:
    """One nginx worker's RPC object: its own msg ids, its own socket(s).

    Kong calls ``ngx.socket.connect`` for each call and puts the socket back in the keepalive
    pool afterwards, so one worker keeps reusing a connection; ``fresh_connections`` opens a
    new one per call instead (what happens when the pool is empty).
    """

    def __init__(self, path: str, *, fresh_connections: bool = False,
                 timeout: float = KONG_SOCKET_TIMEOUT,
                 on_new_server: Callable[[int], None] | None = None):
        self.path = path
        self.fresh = fresh_connections
        self.timeout = timeout
        self.msg_id = 0
        self.server_pid: int | None = None
        self.notifications: list[tuple[str, Any]] = []
        # plugin.lua rpc_notifications:serverPid: a pid other than the last one seen resets
        # every instance started through this Rpc object.
        self.on_new_server = on_new_server
        self._sock: socket.socket | None = None
        self._unpacker: msgpack.Unpacker | None = None
        self._fed = 0  # bytes fed to the unpacker
        self._done = 0  # bytes of the complete objects read: fewer than fed = a partial one
        # Lua strings are bytes and MessagePack.lua packs them as str: bytes here go out as
        # str-type raw strings (use_bin_type=False), like Kong sends non-UTF-8 header values.
        self._packer = msgpack.Packer(use_bin_type=False)

    def _connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self._sock = s
        self._unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape",
                                          strict_map_key=False)
        self._fed = self._done = 0

    def close(self) -> None:
        """Drop the pooled connection."""
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def call(self, method: str, *args: Any) -> Any:
        """``Rpc:call``: send ``[0, id, method, args]``, read until our response."""
        self.msg_id += 1
        msg_id = self.msg_id
        if self._sock is not None and not self.fresh and _peer_closed(self._sock):
            self.close()  # nginx's keepalive pool drops idle connections the peer closed
        if self._sock is None or self.fresh:
            self.close()
            try:
                self._connect()
            except OSError as exc:  # no server (yet): Rpc:call returns nil, err
                self.close()
                raise RPCFailure(f"failed to connect to {self.path}: {exc}") from None
        assert self._sock is not None and self._unpacker is not None
        try:
            self._sock.sendall(self._packer.pack([0, msg_id, method, list(args)]))
            while True:
                for data in self._unpacker:
                    self._done = self._unpacker.tell()
                    if isinstance(data, list) and data and data[0] == 2:  # [2, label, args]
                        self._notify(data[1], data[2])
                        continue
                    if not (isinstance(data, list) and len(data) == 4 and data[0] == 1):
                        self.close()
                        raise RPCAbort("RPC response expected from Go plugin server")
                    if data[1] != msg_id:
                        self.close()
                        raise RPCAbort("unexpected RPC response ID from Go plugin server")
                    if data[2] is not None:
                        raise RPCFailure(str(data[2]))
                    return data[3]
                chunk = self._sock.recv(65536)
                if not chunk:
                    partial = self._fed > self._done
                    self.close()
                    if partial:
                        raise RPCAbort("MessagePack: missing bytes (reply cut by EOF)")
                    raise RPCFailure("no data")
                self._fed += len(chunk)
                self._unpacker.feed(chunk)
        except OSError as exc:
            self.close()
            raise RPCFailure(f"no data ({exc})") from None

    def _notify(self, label: str, args: Any) -> None:
        self.notifications.append((label, args))
        if label == "serverPid":
            pid = int(args)
            if self.server_pid is not None and pid != self.server_pid and self.on_new_server:
                self.on_new_server(pid)
            self.server_pid = pid


def _peer_closed(sock: socket.socket) -> bool:
    """True when nginx's keepalive pool would have dropped the idle pooled connection.

    lua-nginx-module ``ngx_http_lua_socket_keepalive_close_handler`` peeks one byte of an idle
    pooled connection that turned readable and closes it on anything but EAGAIN: EOF, an
    error, or bytes (a draining server's poke, see gateway/drain.py).
    """
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except OSError:
        return True
