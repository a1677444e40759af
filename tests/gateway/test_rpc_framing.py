"""Connection framing: strict UTF-8 first, surrogateescape from the first Lua string that is not."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

import msgpack

from kong_ace.gateway.events import ThreadEvent
from kong_ace.gateway.rpc import Connection, PluginServer

BAD = b"\xff\xfeh\xc3".decode("utf-8", "surrogateescape")  # a Lua string that is not UTF-8


class Echo:
    """Reads ace-context's key and writes what it read back: a round trip of the value."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def access(self, kong: Any) -> None:
        """get_ctx, then set_ctx of the same value."""
        kong.nginx.set_ctx("echo", kong.nginx.get_ctx("in"))


MODULE = SimpleNamespace(Plugin=Echo, Schema=[], version="0", priority=1)


def packed(msg_id: int, method: str, *args: Any) -> bytes:
    return msgpack.packb([0, msg_id, method, list(args)],  # type: ignore[no-any-return]
                         unicode_errors="surrogateescape")


class Wire:
    """The Kong end of a socketpair whose other end a Connection serves in a thread."""

    def __init__(self) -> None:
        self.server = PluginServer("ace", MODULE, ThreadEvent)
        self.sock, theirs = socket.socketpair()
        self.sock.settimeout(10)

        def serve() -> None:
            try:
                Connection(theirs, self.server).serve()
            finally:
                theirs.close()  # as server.py's handle() does

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        self.unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        assert self.read()[:2] == [2, b"serverPid"]

    def read(self) -> Any:
        while True:
            for msg in self.unpacker:
                return msg
            self.unpacker.feed(self.sock.recv(65536))

    def reply(self, msg_id: int) -> Any:
        msg = self.read()
        assert msg[:3] == [1, msg_id, None], msg
        return msg[3]

    def close(self) -> None:
        self.sock.close()
        self.thread.join(10)


# Threading mode: the framing is the same in both modes, and a GreenletEvent run in a test
# thread would leave its greenlet in the process-wide pool of idle handler greenlets.
def test_a_string_that_is_not_utf8_is_kept_byte_for_byte_mid_chunk() -> None:
    wire = Wire()
    try:
        wire.sock.sendall(packed(1, "plugin.StartInstance", {"Name": "ace", "Config": "{}"}))
        iid = wire.reply(1)[b"Id"]
        events = []
        for msg_id in (2, 3):
            wire.sock.sendall(packed(msg_id, "plugin.HandleEvent",
                                     {"InstanceId": iid, "EventName": "access"}))
            events.append(wire.reply(msg_id)[b"EventId"])
        # One chunk: a UTF-8 call, the bad string, and the first half of a third call (its
        # other half follows): each is answered once, in order, after the decoder changes.
        third = packed(6, "plugin.Step", {"EventId": events[1], "Data": {"v": "ü"}})
        wire.sock.sendall(packed(4, "plugin.SetPluginDir", "/x")
                          + packed(5, "plugin.Step", {"EventId": events[0],
                                                      "Data": {"v": BAD, BAD: [BAD]}})
                          + third[:7])
        assert wire.reply(4) == b"ok"
        echoed = wire.reply(5)[b"Data"][b"Args"]
        assert echoed == [b"echo", {b"v": b"\xff\xfeh\xc3", b"\xff\xfeh\xc3": [b"\xff\xfeh\xc3"]}]
        wire.sock.sendall(third[7:])
        assert wire.reply(6)[b"Data"][b"Args"] == [b"echo", {b"v": "ü".encode()}]
        # Later calls on the connection still decode (now with surrogateescape).
        wire.sock.sendall(packed(7, "plugin.Step", {"EventId": events[0]}))
        assert wire.reply(7)[b"Data"] == b"ret"
    finally:
        wire.close()


def test_a_message_not_utf8_in_many_chunks_is_decoded_once_whole() -> None:
    wire = Wire()
    try:
        wire.sock.sendall(packed(1, "plugin.StartInstance", {"Name": "ace", "Config": "{}"}))
        iid = wire.reply(1)[b"Id"]
        wire.sock.sendall(packed(2, "plugin.HandleEvent", {"InstanceId": iid,
                                                           "EventName": "access"}))
        eid = wire.reply(2)[b"EventId"]
        # The bad string comes whole in the first piece, the rest of its message later, in
        # pieces of a few bytes (a large message in many reads).
        big = packed(3, "plugin.Step", {"EventId": eid, "Data": {"v": BAD, "w": "x" * 5000}})
        cut = big.index(b"\xff\xfeh\xc3") + 6
        last = packed(4, "plugin.Step", {"EventId": eid})
        stream = big + last[:5]  # the next call's start comes with the end of this one
        wire.sock.sendall(stream[:cut])
        for i in range(cut, len(stream), 1000):
            time.sleep(0.01)  # separate reads
            wire.sock.sendall(stream[i:i + 1000])
        echoed = wire.reply(3)[b"Data"][b"Args"][1]
        assert echoed == {b"v": b"\xff\xfeh\xc3", b"w": b"x" * 5000}
        wire.sock.sendall(last[5:])
        assert wire.reply(4)[b"Data"] == b"ret"
    finally:
        wire.close()


def test_a_broken_stream_still_closes_the_connection() -> None:
    wire = Wire()
    try:
        wire.sock.sendall(b"\xc1")  # never a msgpack type byte
        assert wire.sock.recv(100) == b""
    finally:
        wire.close()
