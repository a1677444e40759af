"""A real Kong Gateway for end-to-end tests and benchmarks (no pytest imports).

Finds Kong through ``KONG_ACE_REAL_KONG`` (a folder with ``env.sh``, as the shared build in
``../shared/realkong``) or a ``kong`` on PATH; runs DB-less nodes with this checkout's plugin
server and Lua companions; an upstream that reports exactly what it received.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
ENV_VAR = "KONG_ACE_REAL_KONG"
SKIP_REASON = (f"no real Kong: set {ENV_VAR} to a folder with env.sh (bash "
               "../shared/realkong/install.sh gives /tmp/realkong) or put `kong` on PATH")
SOCKET_NAME = "ace.socket"
START_TIMEOUT = 60.0
BIND_RETRIES = 3  # kong start attempts when a port chosen free was taken meanwhile


@dataclass(frozen=True)
class KongInstall:
    """Where `kong` is and the environment to run it with."""

    kong: str
    env: dict[str, str]
    root: Path | None = None

    @property
    def cwd(self) -> str | None:
        """Where to run `kong`: Kong finds its .proto files through the relative path
        ``kong/include`` (kong/observability/otlp/proto.lua), which a source build like the
        shared one has only under ``src/kong``; an installed Kong has /usr/local/kong/include."""
        if self.root and (self.root / "src" / "kong" / "kong" / "include").is_dir():
            return str(self.root / "src" / "kong")
        return None

    def run(self, *args: str, timeout: float = 120.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `kong ARGS` and return the completed process (never raises on exit status)."""
        return subprocess.run([self.kong, *args], env={**self.env, **(env or {})},
                              cwd=self.cwd, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def version(self) -> str:
        """`kong version`'s output, e.g. ``3.9.1``."""
        return self.run("version").stdout.strip()


def _sourced_env(env_sh: Path) -> dict[str, str]:
    out = subprocess.run(["bash", "-c", f"source {shlex.quote(str(env_sh))} && env -0"],
                         capture_output=True, check=True, timeout=30).stdout
    pairs = (item.split(b"=", 1) for item in out.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode() for k, v in pairs}


def find_kong() -> KongInstall | None:
    """The Kong named by KONG_ACE_REAL_KONG (folder with env.sh), else `kong` on PATH, else None."""
    root = os.environ.get(ENV_VAR)
    if root:
        env_sh = Path(root) / "env.sh"
        if not env_sh.is_file():
            return None
        env = _sourced_env(env_sh)
        kong = shutil.which("kong", path=env.get("PATH"))
        return KongInstall(kong, env, Path(root)) if kong else None
    kong = shutil.which("kong")
    return KongInstall(kong, dict(os.environ)) if kong else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# The upstream


# http.server refuses a request with more than 100 header lines (431, http.client._MAXHEADERS);
# the upstream must see whatever Kong forwards, so the 101st-header cases reach it.
http.client._MAXHEADERS = max(http.client._MAXHEADERS, 10_000)  # type: ignore[attr-defined]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _UpstreamServer

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._answer
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass

    def _body(self) -> str:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            raw = b"".join(chunks)
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return raw.decode("utf-8", "replace")

    def _answer(self) -> None:
        path, _, query = self.path.partition("?")
        record = {"method": self.command, "target": self.path, "path": path, "query": query,
                  "headers": [[k, v] for k, v in self.headers.items()], "body": self._body()}
        self.server.record(record)
        payload = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def record(self, item: dict[str, Any]) -> None:
        with self.lock:
            self.received.append(item)


class Upstream:
    """A real HTTP server on 127.0.0.1 that answers 200 with (and records) what it received."""

    def __init__(self) -> None:
        self._server = _UpstreamServer()
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"upstream-{self.port}")
        self._thread.start()

    @property
    def received(self) -> list[dict[str, Any]]:
        """Every request received so far, oldest first (a copy)."""
        with self._server.lock:
            return list(self._server.received)

    def clear(self) -> None:
        """Forget what was received."""
        with self._server.lock:
            self._server.received.clear()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Upstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def header(record: dict[str, Any], name: str) -> list[str]:
    """Every value of header ``name`` (any case) in an upstream record, in received order."""
    return [v for k, v in record["headers"] if k.lower() == name.lower()]


# ---------------------------------------------------------------------------------------------
# Kong


@dataclass
class Response:
    """What the client got: status, headers (case-insensitive .get/.get_all) and body."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes
    json: Any = field(default=None)


def _response(resp: http.client.HTTPResponse) -> Response:
    body = resp.read()
    parsed = None
    with contextlib.suppress(ValueError):
        parsed = json.loads(body) if body else None
    return Response(resp.status, resp.headers, body, parsed)


def ace_config(upstream_url: str, ace: dict[str, Any], *,
               services: list[dict[str, Any]] | None = None,
               consumers: list[dict[str, Any]] | None = None,
               extra_plugins: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A declarative config: one service at the upstream, a catch-all route, the global ace."""
    default = {"name": "upstream", "url": upstream_url,
               "routes": [{"name": "all", "paths": ["/"], "strip_path": False}]}
    config: dict[str, Any] = {
        "_format_version": "3.0",
        "services": services if services is not None else [default],
        "plugins": [{"name": "ace", "config": ace}, *(extra_plugins or [])],
    }
    if consumers:
        config["consumers"] = consumers
    return config


def _probe_service(host: str) -> dict[str, Any]:
    """A route on ``host`` whose pre-function answers before any ACE plugin runs."""
    code = f"return kong.response.exit(200, {{ kong_ace_probe = {json.dumps(host)} }})"
    return {"name": host.split(".")[0], "url": "http://127.0.0.1:9",
            "routes": [{"name": host.split(".")[0], "hosts": [host], "paths": ["/"],
                        "plugins": [{"name": "pre-function", "config": {"access": [code]}}]}]}


COMPANIONS = [{"name": "ace-context"}, {"name": "ace-guard"}]


def _with_mode(declarative: dict[str, Any], mode: str) -> dict[str, Any]:
    """Add the global companions in companion mode (unless the config already names them)."""
    if mode not in ("companion", "classic"):
        raise ValueError(f"mode must be 'companion' or 'classic', not {mode!r}")
    out = dict(declarative)
    plugins = list(out.get("plugins", []))
    names = {p.get("name") for p in plugins}
    if mode == "companion":
        plugins += [p for p in COMPANIONS if p["name"] not in names]
    out["plugins"] = plugins
    return out


def _proc_children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, which PID 1 here may never reap, is not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class KongNode:
    """A real DB-less Kong (1 worker unless told) with this checkout's ace plugin server."""

    def __init__(self, declarative: dict[str, Any], *, mode: str = "companion", workers: int = 1,
                 server: str = "managed", conf: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None, database: dict[str, Any] | None = None,
                 install: KongInstall | None = None, server_args: list[str] | None = None
                 ) -> None:
        if server not in ("managed", "supervised", "none"):
            raise ValueError(f"server must be managed, supervised or none, not {server!r}")
        found = install or find_kong()
        if found is None:
            raise RuntimeError(SKIP_REASON)
        self.install = found
        self.mode = mode
        self.workers = workers
        self.server = server
        self.declarative = _with_mode(declarative, mode)
        self.env = dict(env or {})
        self.database = database
        self.server_args = list(server_args or [])
        self.prefix = Path(tempfile.mkdtemp(prefix="kong-ace-realkong-"))
        os.chmod(self.prefix, 0o755)
        self._pick_ports()
        self.socket = self.prefix / SOCKET_NAME
        self.conf_path = self.prefix / "kong.conf"
        self.yml_path = self.prefix / "kong.yml"
        self.extra_conf = dict(conf or {})
        self._supervisor: subprocess.Popen[bytes] | None = None
        self._master: int | None = None
        self._probes = 0
        self.started = False

    # -- configuration -------------------------------------------------------------------------

    def _pick_ports(self) -> None:
        self.proxy_port = free_port()
        self.admin_port = free_port()
        self.proxy_url = f"http://127.0.0.1:{self.proxy_port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"

    def server_command(self) -> list[str]:
        """The kong-ace-server command line serving this node's socket."""
        return [str(VENV_BIN / "kong-ace-server"), "-p", str(self.prefix),
                "--socket-name", SOCKET_NAME, *self.server_args]

    def kong_conf(self) -> dict[str, Any]:
        """The kong.conf settings of this node."""
        conf: dict[str, Any] = {
            "prefix": str(self.prefix),
            "router_flavor": "traditional",
            "nginx_worker_processes": self.workers,
            "proxy_listen": f"127.0.0.1:{self.proxy_port}",
            "admin_listen": f"127.0.0.1:{self.admin_port}",
            "admin_gui_listen": "off",
            "status_listen": "off",
            "anonymous_reports": "off",
            "plugins": "bundled,ace,ace-context,ace-guard",
            "lua_package_path": f"{REPO / 'plugin'}/?.lua;;",
            "pluginserver_names": "ace",
            "pluginserver_ace_socket": str(self.socket),
            "pluginserver_ace_query_cmd": f"{VENV_BIN / 'kong-ace-server'} --dump",
        }
        if os.geteuid() == 0:
            conf["nginx_user"] = "root root"
        if self.database:
            conf.update(self.database)
        else:
            conf["database"] = "off"
            conf["declarative_config"] = str(self.yml_path)
        if self.server == "managed":
            envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
            cmd = " ".join(shlex.quote(a) for a in self.server_command())
            conf["pluginserver_ace_start_cmd"] = f"env {envs} {cmd}" if envs else cmd
        conf.update(self.extra_conf)
        return conf

    def _write(self) -> None:
        lines = [f"{k} = {v}" for k, v in self.kong_conf().items()]
        self.conf_path.write_text("\n".join(lines) + "\n")
        if not self.database:
            self.yml_path.write_text(yaml.safe_dump(self.declarative, sort_keys=False))

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> KongNode:
        """Write the config, start the server (when supervised) and Kong; wait until it serves."""
        self._write()
        env = {**self.install.env, **self.env}
        if self.server == "supervised":
            self._supervisor = subprocess.Popen(
                [*self.server_command(), "--supervise"], env={**os.environ, **self.env},
                stdout=open(self.prefix / "ace-server.log", "ab"),  # noqa: SIM115 - child keeps it
                stderr=subprocess.STDOUT, start_new_session=True)
            self._wait(lambda: self.socket.exists(), "the supervised server's socket")
        self.started = True
        for _attempt in range(BIND_RETRIES):
            done = subprocess.run([self.install.kong, "start", "-c", str(self.conf_path)],
                                  env=env, cwd=self.install.cwd, capture_output=True, text=True,
                                  timeout=START_TIMEOUT, check=False)
            if done.returncode == 0 or "bind()" not in done.stderr + self.error_log():
                break
            # Another process took a port between free_port() and nginx's bind: new ports.
            self._pick_ports()
            self._write()
        if done.returncode != 0:
            log = self.error_log()[-4000:]
            self.stop()
            raise RuntimeError(f"kong start failed ({done.returncode}): {done.stderr.strip()}"
                               f"\n--- error.log tail ---\n{log}")
        self._master = self._read_master()
        self._wait(self._serving, "Kong's admin API and proxy")
        return self

    def _read_master(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.prefix / "pids" / "nginx.pid").read_text().strip())
        return None

    def _serving(self) -> bool:
        if self.server != "none" and not self.socket.exists():
            return False  # the managed server starts after Kong's first timer: wait for it
        try:
            status, _ = self.admin("GET", "/status")
            with socket.create_connection(("127.0.0.1", self.proxy_port), timeout=1):
                pass
        except OSError:
            return False
        return status == 200

    @staticmethod
    def _wait(ready: Any, what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def reload(self) -> None:
        """`kong reload` (new workers, same master)."""
        self._write()
        done = self.install.run("reload", "-c", str(self.conf_path), env=self.env)
        if done.returncode != 0:
            raise RuntimeError(f"kong reload failed: {done.stderr.strip()}")

    def _all_pids(self) -> list[int]:
        """Every live process of this node: nginx master, workers, plugin servers."""
        pids: set[int] = set()
        if self._master and _alive(self._master):
            pids.add(self._master)
            pids.update(p for p in _proc_children(self._master) if _alive(p))
        pids.update(self.server_pids())
        if self._supervisor and self._supervisor.poll() is None:
            pids.add(self._supervisor.pid)
        return sorted(pids)

    def stop(self) -> None:
        """Stop Kong and the plugin server; leaves no process of this node behind."""
        if not self.started:
            return
        self.started = False
        pids = self._all_pids()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.install.run("stop", "-p", str(self.prefix), timeout=30)
        if self._supervisor and self._supervisor.poll() is None:
            self._supervisor.terminate()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in [*pids, *self._all_pids()]:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self._supervisor:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._supervisor.wait(timeout=5)

    def __enter__(self) -> KongNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cleanup(self) -> None:
        """Stop, then remove the prefix."""
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)

    # -- processes -----------------------------------------------------------------------------

    def worker_pids(self) -> list[int]:
        """The live nginx worker processes."""
        if not self._master:
            return []
        return sorted(p for p in _proc_children(self._master)
                      if _alive(p) and "worker process" in _cmdline(p))

    def server_pids(self) -> list[int]:
        """The live kong-ace-server processes serving this node (supervisor and children too)."""
        mark = str(self.prefix)
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                cmd = _cmdline(int(entry.name))
                ours = ("kong_ace" in cmd or "kong-ace-server" in cmd) and mark in cmd.split()
                if ours and "--dump" not in cmd and _alive(int(entry.name)):
                    pids.append(int(entry.name))
        return sorted(pids)

    def error_log(self) -> str:
        """Kong's error.log so far."""
        try:
            return (self.prefix / "logs" / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- HTTP ----------------------------------------------------------------------------------

    def _http(self, port: int, method: str, target: str, headers: Any, body: Any,
              timeout: float) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            data = body if isinstance(body, bytes | None) else (
                body.encode() if isinstance(body, str) else json.dumps(body).encode())
            hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
            if data is not None and isinstance(body, dict | list) and not any(
                    k.lower() == "content-type" for k, _ in hdrs):
                hdrs.append(("Content-Type", "application/json"))
            conn.putrequest(method, target, skip_host=any(k.lower() == "host" for k, _ in hdrs),
                            skip_accept_encoding=True)
            for k, v in hdrs:
                conn.putheader(k, v)
            if data is not None:
                conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
            return _response(conn.getresponse())
        finally:
            conn.close()

    def request(self, method: str, path: str, headers: Any = None, body: Any = None,
                timeout: float = 30.0) -> Response:
        """One request through the proxy; ``path`` goes on the request line as given."""
        return self._http(self.proxy_port, method, path, headers, body, timeout)

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One Admin API request: (status, parsed JSON or raw body)."""
        resp = self._http(self.admin_port, method, path, None, body, 30.0)
        return resp.status, resp.json if resp.json is not None else resp.body

    def post_config(self, declarative: dict[str, Any], *, wait: bool = True) -> tuple[int, Any]:
        """POST /config (DB-less): the companions are added in companion mode.

        Kong answers before its workers rebuild their router and plugins (a worker event,
        kong/db/declarative/import.lua ``load_into_cache_with_events``); with ``wait`` a probe
        route added to the config (a pre-function, which runs before every ACE plugin) tells
        when every worker serves the new config.
        """
        self.declarative = _with_mode(declarative, self.mode)
        self._probes += 1
        probe = f"probe-{self._probes}.kong-ace.invalid"
        body = dict(self.declarative)
        if wait:
            body["services"] = [*body.get("services", []), _probe_service(probe)]
        status, answer = self.admin("POST", "/config", body)
        if wait and status in (200, 201):
            self._wait(lambda: self._probe(probe), "every worker to load the posted config")
        return status, answer

    def _probe(self, host: str) -> bool:
        for _ in range(4 * self.workers):  # a connection each: any worker may answer
            resp = self.request("GET", "/", {"Host": host})
            if resp.json != {"kong_ace_probe": host}:
                return False
        return True

    def raw(self, data: bytes, timeout: float = 10.0) -> bytes:
        """Send ``data`` on a raw socket to the proxy; the bytes read until one full answer."""
        with socket.create_connection(("127.0.0.1", self.proxy_port), timeout=timeout) as s:
            s.sendall(data)
            got = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                got += chunk
                if _complete(got):
                    break
            return got


def _complete(data: bytes) -> bool:
    """Whether ``data`` holds a full HTTP response with a Content-Length (or none needed)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or b"0")
    return False


def parse_raw(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers lower-cased, body) of a raw HTTP response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    hdrs = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        hdrs[name.strip().lower()] = value.strip()
    return status, hdrs, body


def quote_path(path: str) -> str:
    """Percent-encode what http.client refuses on a request line, keeping existing escapes."""
    return urllib.parse.quote(path, safe="/%;:@&=+$,!*'()?#[]~")
