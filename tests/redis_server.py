"""A real redis-server for the tests, started on a free loopback port."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis


class RedisServer:
    """A throw-away redis-server on a free loopback port that tests may stop and start again."""

    persistence: tuple[str, ...] = ("--appendonly", "no")

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The `rate_limiting.redis` block pointing at this server (timeout in ms, as Kong)."""
        return {"host": "127.0.0.1", "port": self.port, "database": 0, "timeout": 500}

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", *self.persistence, "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.exceptions.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL, by pid: no shutdown, no goodbye to clients."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None


S = TypeVar("S", bound=RedisServer)


@contextmanager
def running(workdir: Path, server_class: type[S] = RedisServer) -> Iterator[S]:  # type: ignore
    """A real ``server_class`` started in ``workdir`` for the duration of the block."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: run `bash .ci/setup`")
    server = server_class(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
