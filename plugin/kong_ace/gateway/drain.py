"""Letting Kong's pooled connections go without losing a call (SPEC §10, restarts are graceful).

Kong calls the plugin server through nginx's cosocket keepalive pool
(kong/runloop/plugin_servers/rpc/mp_rpc.lua ``Rpc:call``: ``ngx.socket.connect``, one request,
``setkeepalive``). A server that closes a connection loses any call Kong has already written on
it (``no data`` / ``broken pipe``: fail open, or ace-guard's 503). What Kong's pool does notice
is a pooled connection that becomes readable while idle: lua-nginx-module's
``ngx_http_lua_socket_keepalive_close_handler`` peeks one byte and closes the connection on
anything but EAGAIN, data or EOF alike (``setkeepalive`` runs the same check when the socket is
already readable).

So a draining server *pokes* each connection instead of closing it: it sends one msgpack-RPC
notification ``[2, "serverDraining", pid]``, a label Kong ignores (plugin.lua
``rpc_notifications`` only knows ``serverPid``). Either the connection sat idle in the pool and
nginx closes it (we read EOF), or a coroutine had already taken it and written a call: Kong reads
the notification inside that call (mp_rpc.lua handles ``[2, ...]`` before the reply) and gets
its answer; the poke is then repeated. A poke is never lost inside a reply: it is sent only when
Kong has read every byte we wrote (SIOCOUTQ is 0) and no call is being answered, so it cannot
reach Kong in the same ``receiveany`` as a reply and be dropped with Kong's unpacker.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import termios
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack

log = logging.getLogger("kong_ace.gateway.server")

POKE_LABEL = "serverDraining"
POLL = 0.002  # seconds between two looks at the connections while draining


def poke_message() -> bytes:
    """The notification a draining server sends on an idle connection."""
    return msgpack.packb([2, POKE_LABEL, os.getpid()])  # type: ignore[no-any-return]


def unread(sock: Any) -> int:
    """Bytes we sent that Kong has not read yet (SIOCOUTQ, the same ioctl as TIOCOUTQ)."""
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0  # closed: nothing more will be read
    return struct.unpack("i", buf)[0]  # type: ignore[no-any-return]


class Tracked:
    """What the drain needs to know about one Kong connection."""

    def __init__(self, sock: Any, send: Callable[[bytes], None], *, threaded: bool) -> None:
        self.sock = sock
        self.send = send
        self.busy = False  # a request was read and its answer is not fully sent yet
        self.partial = False  # part of a request is buffered
        self.poked = False  # a poke was sent and no request came since
        # Threading mode: a poke must not land between two send() calls of one large reply.
        # gevent mode needs none (nothing runs between the checks and the send), and the
        # lock would cost every RPC message about 1 us.
        self.lock: Any = threading.Lock() if threaded else None

    def took(self) -> None:
        """Kong wrote on the connection: busy until answered; any poke is read in this call."""
        lock = self.lock
        if lock is None:
            self.busy = True
            self.poked = False
            return
        with lock:
            self.busy = True
            self.poked = False

    def pokable(self) -> bool:
        """True when a poke now cannot reach Kong inside the answer to a call."""
        return (not self.poked and not self.busy and not self.partial
                and unread(self.sock) == 0)

    def poke(self, message: bytes) -> bool:
        """Send the poke; False if the connection is gone."""
        with self.lock or contextlib.nullcontext():
            if self.busy:
                return True  # a request came meanwhile (threading mode): poke after it
            self.poked = True
            try:
                self.send(message)
            except OSError:
                return False
        return True


class Connections:
    """The live Kong connections of this process."""

    def __init__(self) -> None:
        self._live: dict[int, Tracked] = {}
        self._lock = threading.Lock()

    def add(self, tracked: Tracked) -> None:
        """A connection was accepted."""
        with self._lock:
            self._live[id(tracked)] = tracked

    def remove(self, tracked: Tracked) -> None:
        """Kong closed a connection (or it failed)."""
        with self._lock:
            self._live.pop(id(tracked), None)

    def __len__(self) -> int:
        return len(self._live)

    def snapshot(self) -> list[Tracked]:
        """The connections now."""
        with self._lock:
            return list(self._live.values())

    def drain(self, deadline: float, sleep: Callable[[float], Any],
              clock: Callable[[], float] = time.monotonic) -> int:
        """Poke every idle connection until Kong has closed them all or ``deadline`` passes.

        Returns how many connections were still open at the deadline.
        """
        message = poke_message()
        pokes = 0
        while len(self) and clock() < deadline:
            for tracked in self.snapshot():
                if tracked.pokable():
                    pokes += 1
                    if not tracked.poke(message):
                        self.remove(tracked)
            sleep(POLL)
        left = len(self)
        log.info("drained: %d poke(s) sent, %d connection(s) still open", pokes, left)
        return left
