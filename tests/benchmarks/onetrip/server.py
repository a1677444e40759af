"""The server side of the one-round-trip yardstick: one JSON line in, the no-op verdict out.

``python server.py SOCKET``: per request line (bench-onetrip's JSON), it decodes the request
and answers the no-op plugin's verdict (kong_ace.testing.noop) as one JSON line; no decision,
like bare_server.py, so the figures are the design's floor (bench_realkong.py ``rpc``).
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from gevent.server import StreamServer  # noqa: E402

from kong_ace.testing.noop import VERDICT  # noqa: E402

ANSWER = json.dumps(VERDICT, separators=(",", ":")).encode() + b"\n"


def handle(conn: Any, _: Any) -> None:
    """Serve one pooled Kong connection: a line in, a line out."""
    raw, wait, ev = conn._sock, conn._wait, conn._read_event
    pending = b""
    while True:
        wait(ev)
        try:
            chunk = raw.recv(65536)
        except BlockingIOError:
            continue
        if not chunk:
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            json.loads(line)  # what a real server would have to do with it
            raw.send(ANSWER)


def main() -> None:
    """Listen on the socket path given as the only argument."""
    path = sys.argv[1]
    if os.path.exists(path):
        os.remove(path)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    os.chmod(path, 0o777)  # nginx workers may run as another user
    listener.listen(128)
    StreamServer(listener, handle).serve_forever()


if __name__ == "__main__":
    main()
