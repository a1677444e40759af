"""Start a real plugin-server process on a Unix socket, as Kong's process.lua does."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# process.lua pluginserver_timer: a dead server is respawned, never sooner than 1 s after the
# previous start (next_spawn = ngx.now() + 1).
RESPAWN_INTERVAL = 1.0


def server_command() -> list[str]:
    """The installed `kong-ace-server` console script (next to this interpreter)."""
    exe = Path(sys.executable).with_name("kong-ace-server")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("kong-ace-server")
    return [found] if found else [sys.executable, "-m", "kong_ace.gateway.server"]


def dump_info(command: list[str] | None = None) -> list[dict[str, Any]]:
    """What Kong's query command reads: the plugin-info list printed by ``--dump``."""
    out = subprocess.run([*(command or server_command()), "--dump"], check=True,
                         capture_output=True, timeout=60)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


class PluginServerProcess:
    """A plugin server process listening on ``<tmpdir>/<socket_name>``; a context manager."""

    def __init__(self, command: list[str] | None = None, *, args: tuple[str, ...] = (),
                 socket_name: str = "ace.socket", env: dict[str, str] | None = None,
                 cwd: str | None = None, prefix: str | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="kong-ace-")
        self.prefix = prefix or self._tmp.name  # share a prefix to play a reload
        self.socket = os.path.join(self.prefix, socket_name)
        self.log_path = os.path.join(self._tmp.name, "server.log")
        self.command = [*(command or server_command()), "-p", self.prefix,
                        "--socket-name", socket_name, *args]
        self._env = {**os.environ, **(env or {})}
        self._cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, mode: str = "wb") -> subprocess.Popen[bytes]:
        log = open(self.log_path, mode)  # noqa: SIM115 - owned by the child process
        proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                env=self._env, cwd=self._cwd)
        log.close()
        return proc

    def start(self, timeout: float = 30.0) -> PluginServerProcess:
        """Spawn the server and wait (bounded) until its socket accepts connections."""
        previous = _identity(self.socket)  # a predecessor's socket does not count
        self.proc = self._spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"plugin server exited ({self.proc.returncode}):\n{self.log}")
            now = _identity(self.socket)
            if now is not None and now != previous and _accepts(self.socket):
                return self
            time.sleep(0.02)  # polling for the socket file, bounded by the deadline
        self.stop()
        raise TimeoutError(f"no socket at {self.socket} after {timeout}s:\n{self.log}")

    @property
    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Terminate the server (by its pid) and remove the temp dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._tmp.cleanup()

    def __enter__(self) -> PluginServerProcess:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


class KongManagedServer(PluginServerProcess):
    """A server Kong starts itself (``pluginserver_<name>_start_cmd``), respawned as Kong does.

    When the process dies, a new one is spawned at once, but never sooner than
    RESPAWN_INTERVAL after the previous start; ``starts`` records each start (monotonic).
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.starts: list[float] = []
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> KongManagedServer:
        """Start the first process, then keep respawning it until stop()."""
        self.starts.append(time.monotonic())
        super().start(timeout)
        self._monitor = threading.Thread(target=self._respawn, daemon=True)
        self._monitor.start()
        return self

    def _respawn(self) -> None:
        while not self._stopping.is_set():
            proc = self.proc
            assert proc is not None
            proc.wait()
            if self._stopping.is_set():
                return
            wait = self.starts[-1] + RESPAWN_INTERVAL - time.monotonic()
            if wait > 0 and self._stopping.wait(wait):
                return
            self.starts.append(time.monotonic())
            self.proc = self._spawn("ab")

    def stop(self) -> None:
        """Stop respawning, then stop the current process."""
        self._stopping.set()
        super().stop()
        if self._monitor is not None:
            self._monitor.join(timeout=10)


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


def _accepts(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
