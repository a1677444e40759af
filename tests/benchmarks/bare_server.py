"""The least a gevent plugin server does per companion-mode request: 3 RPCs and no plugin.

``python bare_server.py SOCKET``: answers StartInstance, then per event HandleEvent with the
get_ctx call, the first Step with the no-op's set_ctx verdict, the second with "ret" - the
floor of the two-PDK-call design for bench_realkong.py (no events, no greenlet per event, no
error handling: a benchmark's yardstick, never a server).

``python bare_server.py SOCKET N``: per event, N PDK calls that do nothing in Kong
(``kong.nginx.get_ctx`` of a key nobody sets, answered nil), then "ret": N + 1 messages, for
the cost of one message (bench_realkong.py's ``rpc`` section).
"""

from gevent import monkey

monkey.patch_all()

import itertools  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import msgpack  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

from kong_ace.testing.noop import VERDICT  # noqa: E402

GET = {"Method": "kong.nginx.get_ctx", "Args": ["kong_ace_request"]}
SET = {"Method": "kong.nginx.set_ctx", "Args": ["kong_ace_verdict", VERDICT]}
NOTHING = {"Method": "kong.nginx.get_ctx", "Args": ["kong_ace_bench_nothing"]}
state: dict[int, int] = {}
ids = itertools.count(1)
CALLS: int | None = None  # None: the companion-mode exchange; else that many empty calls


def handle(conn: Any, _: Any) -> None:
    """Serve one Kong connection."""
    up = msgpack.Unpacker(raw=False, strict_map_key=False)
    pk = msgpack.Packer()
    conn.sendall(pk.pack([2, "serverPid", os.getpid()]))
    raw, wait, ev = conn._sock, conn._wait, conn._read_event
    while True:
        wait(ev)
        chunk = raw.recv(65536)
        if not chunk:
            return
        up.feed(chunk)
        for _, mid, method, args in up:
            if method == "plugin.StartInstance":
                res = {"Name": "ace", "Id": 1, "Config": {}, "StartTime": 0}
            elif CALLS is not None:
                if method == "plugin.HandleEvent":
                    eid = next(ids)
                    state[eid] = CALLS
                else:
                    eid = args[0]["EventId"]
                left = state[eid]
                if left:
                    state[eid] = left - 1
                    res = {"Data": NOTHING, "EventId": eid}
                else:
                    del state[eid]
                    res = {"Data": "ret", "EventId": eid}
            elif method == "plugin.HandleEvent":
                eid = next(ids)
                state[eid] = 0
                res = {"Data": GET, "EventId": eid}
            else:
                eid = args[0]["EventId"]
                if state[eid] == 0:
                    state[eid] = 1
                    res = {"Data": SET, "EventId": eid}
                else:
                    del state[eid]
                    res = {"Data": "ret", "EventId": eid}
            raw.send(pk.pack([1, mid, None, res]))


def main() -> None:
    """Listen on the socket path given as the first argument."""
    global CALLS
    path = sys.argv[1]
    if len(sys.argv) > 2:
        CALLS = int(sys.argv[2])
    if os.path.exists(path):
        os.remove(path)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(128)
    StreamServer(listener, handle).serve_forever()


if __name__ == "__main__":
    main()
