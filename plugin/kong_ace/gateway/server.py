"""`kong-ace-server`: the dedicated plugin server Kong starts for the `ace` plugin.

Accepts kong-pdk's dedicated-server flags (what Kong's ``pluginserver_*_start_cmd`` and
``_query_cmd`` pass). ``--dump`` prints the plugin-info JSON list and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from kong_ace.gateway.last_good import DIR_NAME as LAST_GOOD_DIR  # stdlib only: safe pre-patch

NAME = "ace"
DEFAULT_MODE = "gevent"  # measured ~3x cheaper per request than threading (notes/issue-3.md)
# Kong's default socket for plugin server <name> is <prefix>/<name>.socket
# (kong/conf_loader/init.lua, pluginserver_<name>_socket): relying on defaults must work.
SOCKET_NAME = f"{NAME}.socket"
DRAIN_TIMEOUT = 10.0  # seconds a stopping server waits for Kong to let its connections go

METRICS_ENV = "KONG_ACE_METRICS_LISTEN"
METRICS_REMOTE_ENV = "KONG_ACE_METRICS_ALLOW_REMOTE"
METRICS_APPS_ENV = "KONG_ACE_METRICS_APPLICATIONS"

log = logging.getLogger("kong_ace.gateway.server")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """kong-pdk's dedicated-server command line, plus ``--mode`` and the lifecycle flags."""
    from kong_ace.gateway.rpc import INSTANCE_GRACE, INSTANCE_IDLE  # no sockets: safe pre-patch

    p = argparse.ArgumentParser(prog="kong-ace-server",
                                description="Kong plugin server for the ace plugin.")
    p.add_argument("-p", "--kong-prefix", "-kong-prefix", dest="prefix", default="/usr/local/kong/",
                   help="directory of the unix socket (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="count", default=1,
                   help="more logging (-vv: debug)")
    p.add_argument("--version", "-version", action="version", version="%(prog)s 0.1.0")
    p.add_argument("--socket-name", dest="socket_name", default=SOCKET_NAME,
                   help="socket file name in the prefix (default: %(default)s)")
    p.add_argument("--listen-queue-size", dest="listen_queue_size", type=int, default=4096)
    p.add_argument("--no-lua-style", dest="no_lua_style", action="store_true",
                   help="accepted for kong-pdk compatibility (PDK calls always raise on error)")
    mx = p.add_mutually_exclusive_group()
    mx.add_argument("-m", "--multiprocessing", action="store_true",
                    help="accepted for compatibility; ignored: rate-limit counters and compiled "
                         "configs are shared in one process")
    mx.add_argument("-g", "--gevent", action="store_true", help="same as --mode gevent")
    mx.add_argument("--mode", choices=("gevent", "threading"), default=None,
                    help=f"concurrency model (default: {DEFAULT_MODE})")
    p.add_argument("--dump", "-dump", action="store_true",
                   help="print the plugin info JSON list on stdout and exit")
    p.add_argument("--event-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="answer 500 when a handler is silent this long; below Kong's 60 s "
                        "(default: %(default)s)")
    p.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT, metavar="SECONDS",
                   help="on SIGTERM/SIGINT/SIGHUP, wait this long at most for Kong to let "
                        "each connection go (and, handing over, as long for the successor) "
                        "before exiting (default: %(default)s)")
    p.add_argument("--instance-grace", type=float, default=INSTANCE_GRACE, metavar="SECONDS",
                   help="close an instance superseded by a newer __seq__ of its plugin once "
                        "idle this long (default: %(default)s)")
    p.add_argument("--instance-idle", type=float, default=INSTANCE_IDLE, metavar="SECONDS",
                   help="close any instance idle this long (default: %(default)s)")
    p.add_argument("--supervise", action="store_true",
                   help="hold the socket and run the server as a child process, restarting it "
                        "when it dies and forwarding SIGTERM/SIGINT/SIGHUP (for a server Kong "
                        "does not start itself: containers, systemd)")
    p.add_argument("--listen-fd", type=int, default=None, metavar="FD",
                   help=argparse.SUPPRESS)  # the supervisor's listening socket
    p.add_argument("--ready-fd", type=int, default=None, metavar="FD",
                   help=argparse.SUPPRESS)  # the supervisor's status pipe
    p.add_argument("--handoff", choices=("auto", "on", "off"), default="auto",
                   help="on SIGTERM/SIGINT/SIGHUP, exit at once and keep serving the socket "
                        "from a forked copy until the successor Kong starts has replaced it "
                        "(gevent mode; auto: when started by Kong's nginx; default: "
                        "%(default)s)")
    p.add_argument("--metrics-listen", default=os.environ.get(METRICS_ENV) or None,
                   metavar="HOST:PORT",
                   help="serve Prometheus metrics on http://HOST:PORT/metrics, a loopback "
                        f"address (default: off; env {METRICS_ENV})")
    p.add_argument("--metrics-allow-remote", action="store_true",
                   default=_env_flag(METRICS_REMOTE_ENV),
                   help=f"allow a non-loopback --metrics-listen address (env {METRICS_REMOTE_ENV})")
    p.add_argument("--metrics-applications", action="store_true",
                   default=_env_flag(METRICS_APPS_ENV),
                   help="label decision metrics with the application id: one series per "
                        f"application and operation (env {METRICS_APPS_ENV})")
    p.add_argument("--last-good-dir", default=None, metavar="DIR",
                   help="keep each plugin's last good config here, owner-only, so a restart "
                        "while Kong holds a config ACE rejects keeps serving it (default: "
                        f"<prefix>/{LAST_GOOD_DIR}; 'off' disables)")
    p.add_argument("--plugin", default=PLUGIN_MODULE, metavar="MODULE",
                   help="module with Plugin, Schema, version, priority served as 'ace' "
                        "(default: %(default)s; others are for tests)")
    args = p.parse_args(argv)
    args.mode = "gevent" if args.gevent else (args.mode or DEFAULT_MODE)
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = parse_args(argv)
    if args.dump:
        sys.stdout.write(json.dumps([build_server("threading", args.plugin).info()]))
        sys.stdout.flush()
        return 0
    if args.supervise:
        from kong_ace.gateway.supervisor import supervise

        _configure_logging(args.verbose)
        return supervise(args, list(sys.argv[1:] if argv is None else argv))
    if args.mode == "gevent":
        # Before anything opens sockets: Redis I/O in a handler must yield, not block the loop.
        from gevent import monkey

        monkey.patch_all()
    _configure_logging(args.verbose)
    if args.multiprocessing:
        log.warning("-m/--multiprocessing ignored: running in %s mode", args.mode)
    if args.listen_fd is None and not os.path.isdir(args.prefix):
        log.error("prefix %s does not exist, cannot create the unix socket", args.prefix)
        return 1
    path = os.path.join(args.prefix, args.socket_name)
    keep_last_good(args)
    server = build_server(args.mode, args.plugin, args.event_timeout,
                          instance_grace=args.instance_grace, instance_idle=args.instance_idle)
    httpd = None
    if args.metrics_listen:
        httpd = start_metrics(args, server)
        if httpd is None:
            return 1
    return serve(path, server, args.mode, args.listen_queue_size, listen_fd=args.listen_fd,
                 drain_timeout=args.drain_timeout, ready_fd=args.ready_fd,
                 handoff=args.handoff, metrics_httpd=httpd)


def keep_last_good(args: argparse.Namespace) -> None:
    """Keep each plugin's last good config on disk (``--last-good-dir``) and load it back."""
    if args.last_good_dir == "off" or args.plugin != PLUGIN_MODULE:
        return
    from kong_ace.gateway.compiled import CACHE
    from kong_ace.gateway.last_good import LastGoodFiles

    CACHE.keep_on_disk(LastGoodFiles(args.last_good_dir
                                     or os.path.join(args.prefix, LAST_GOOD_DIR)))


def _configure_logging(verbose: int) -> None:
    from kong_ace.core.logsafe import EscapingFilter  # no sockets: safe pre-patch

    logging.basicConfig(
        level=logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1
        else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # Kong copies the server's stderr into its error log: no request may forge a line there.
    for handler in logging.getLogger().handlers:
        handler.addFilter(EscapingFilter())


def start_metrics(args: argparse.Namespace, server: Any) -> Any:
    """Record decisions and serve them on --metrics-listen; its HTTP server, None if it cannot."""
    from kong_ace.gateway import metrics

    try:
        host, port = metrics.parse_listen(args.metrics_listen,
                                          allow_remote=args.metrics_allow_remote)
        recorder = metrics.enable(applications=args.metrics_applications)
        return metrics.serve(host, port, server, recorder)
    except (ValueError, OSError) as exc:
        log.error("cannot serve metrics: %s", exc)
        return None


PLUGIN_MODULE = "kong_ace.gateway.plugin"


def build_server(mode: str, plugin: str = PLUGIN_MODULE, event_timeout: float = 30.0,
                 **lifecycle: float) -> Any:
    """The PluginServer for `ace`: the plugin module, with the event runner of ``mode``."""
    from kong_ace.gateway.events import EVENT_TYPES
    from kong_ace.gateway.rpc import PluginServer

    return PluginServer(NAME, importlib.import_module(plugin), EVENT_TYPES[mode], event_timeout,
                        **lifecycle)


def listen(path: str, backlog: int) -> socket.socket:
    """A listening Unix socket at ``path``, replacing a predecessor's file (as Kong does).

    The socket listens under a temporary name first and is then renamed over ``path``: a
    connect always finds the predecessor or us. Removing the old file first left a gap (the
    first gevent socket builds the hub: tens of ms on a busy machine) in which Kong's connects
    failed with ENOENT, and Kong lets those requests through (seen in ``kong reload``).
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{path}.{os.getpid()}.new"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.remove(staging)
        listener.bind(staging)
    except OSError:  # e.g. the longer name does not fit in sun_path: replace in two steps
        staging = path
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        listener.bind(path)
    listener.listen(backlog)
    if staging != path:
        os.replace(staging, path)
    return listener


def remove_if_ours(path: str, ours: tuple[int, int, int] | None) -> None:
    """Remove the socket file at ``path`` only while it is the one we created.

    After a Kong reload (or a second server) another process may already listen on the path.
    """
    if ours is None:
        return
    with contextlib.suppress(OSError):
        if _identity(path) == ours:
            os.remove(path)


def serve(path: str, server: Any, mode: str, backlog: int = 4096, *,
          listen_fd: int | None = None, drain_timeout: float = DRAIN_TIMEOUT,
          ready_fd: int | None = None, handoff: str = "auto", metrics_httpd: Any = None) -> int:
    """Listen on ``path`` (or the inherited ``listen_fd``) and serve Kong until stopped.

    SIGTERM, SIGINT and SIGHUP (and the end of the parent process) stop the server gracefully
    (SPEC §10): every call Kong writes is still answered, and each connection is let go only
    when Kong's pool drops it while idle (drain.py). Under Kong (``handoff``), the process Kong
    watches exits at once so Kong starts the successor, while a forked copy keeps serving the
    socket until the successor has replaced it. ``ready_fd`` (from the supervisor) gets ``R``
    once serving and ``D`` when draining starts.
    """
    from kong_ace.gateway.drain import Connections
    from kong_ace.gateway.rpc import Connection

    if listen_fd is None:
        listener = listen(path, backlog)
        ours: tuple[int, int, int] | None = _identity(path)
    else:
        # The supervisor owns the path and keeps the socket open across our restarts.
        listener = socket.socket(fileno=listen_fd)
        ours = None
    log.info("%s plugin server (%s mode) listening on %s%s", NAME, mode, path,
             " (supervised)" if listen_fd is not None else "")
    connections = Connections()

    def handle(conn: Any, *_: Any) -> None:
        try:
            Connection(conn, server, connections).serve()
        except OSError as exc:
            log.debug("connection ended: %s", exc)
        finally:
            conn.close()

    stopping: list[bool] = []
    parent = os.getppid()
    hand_over = handoff == "on" or (handoff == "auto" and _is_nginx(parent))
    # The nginx master outlives its workers across `kong reload`: while it runs, a new worker 0
    # will start a successor (our own parent may be an old worker on its way out).
    kong = _parent_of(parent) if _is_nginx(parent) else parent
    if mode == "gevent":
        import gevent
        from gevent.server import StreamServer

        stream = StreamServer(listener, handle)

        def stop(*_: Any) -> None:
            if stopping:
                return
            stopping.append(True)
            _tell(ready_fd, b"D")
            if hand_over and ours is not None and _still(path, ours):
                _hand_over(path, ours, kong, HANDOVER_MAX, metrics_httpd, gevent.sleep)
            stream.close()  # stop accepting; Kong's connections stay served
            remove_if_ours(path, ours)
            _drain(server, connections, drain_timeout, gevent.sleep)

        for sig in STOP_SIGNALS:
            gevent.signal_handler(sig, gevent.spawn, stop)
        gevent.spawn(_watchdog, parent, gevent.sleep, stop)
        stream.start()
        _tell(ready_fd, b"R")
        stream.serve_forever()
        gevent.sleep(HANDOVER_MAX + drain_timeout + 1)  # stop()'s greenlet ends the process
    else:
        def stop(*_: Any) -> None:
            if not stopping:
                stopping.append(True)
                _tell(ready_fd, b"D")
                with contextlib.suppress(OSError):
                    listener.close()
                remove_if_ours(path, ours)
                # Forked handover needs every connection in this thread: gevent mode only.
                _drain(server, connections, drain_timeout, time.sleep)

        for sig in STOP_SIGNALS:
            signal.signal(sig, stop)  # runs in this thread: accept() stops with it
        threading.Thread(target=_watchdog, args=(parent, time.sleep, stop), daemon=True).start()
        _tell(ready_fd, b"R")
        while not stopping:
            try:
                conn, _ = listener.accept()
            except OSError:
                if stopping:
                    break
                raise
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
        time.sleep(drain_timeout + 1)  # stop() runs in this thread or the watchdog's
    return 0


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
HANDOVER_MAX = 120.0  # seconds a handed-over socket waits for Kong's successor at most
SUCCESSOR_POLL = 0.05  # seconds between two looks at the socket file while handing over
LAST_ACCEPTS = 0.1  # keep accepting this long after the successor took the path


def _tell(fd: int | None, what: bytes) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.write(fd, what)


def _is_nginx(pid: int) -> bool:
    """True when ``pid`` is an nginx process: Kong started us (``pluginserver_*_start_cmd``)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip().startswith("nginx")
    except OSError:
        return False


def _parent_of(pid: int) -> int:
    """The parent of process ``pid`` (``pid`` itself if unknown)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return pid


def _still(path: str, ours: tuple[int, int, int]) -> bool:
    try:
        return _identity(path) == ours
    except OSError:
        return False


def _alive(pid: int) -> bool:
    # A zombie is not running (PID 1 may never reap a stopped nginx master here).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _hand_over(path: str, ours: tuple[int, int, int], kong: int, timeout: float,
               metrics_httpd: Any, sleep: Any) -> None:
    """Exit the process Kong watches; keep serving in a forked copy until a successor listens.

    Kong respawns a managed server only once its process has exited and its stdout closed
    (process.lua ``pluginserver_timer``: ``grab_logs`` until "closed", then ``proc:wait``),
    so the copy gives up stdout/stderr and the metrics port to the successor. Returns in the
    copy once the successor has replaced the socket file, Kong is gone (``kong``: the nginx
    master, which a ``kong reload`` keeps and ``kong stop`` ends) or ``timeout`` has passed.
    """
    log.info("stopping: handing the socket over; Kong starts the successor, this process "
             "keeps serving until it listens (logs of the rest of the drain are discarded)")
    logging.shutdown()
    if os.fork():
        os._exit(0)  # the process Kong watches; the copy holds every socket
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    if metrics_httpd is not None:
        with contextlib.suppress(OSError):
            metrics_httpd.socket.close()  # the successor binds the same port
    deadline = time.monotonic() + timeout
    while _still(path, ours) and _alive(kong) and time.monotonic() < deadline:
        sleep(SUCCESSOR_POLL)
    # A connect that found the old socket file just before it was replaced is still queued.
    sleep(LAST_ACCEPTS)


def _drain(server: Any, connections: Any, timeout: float, sleep: Any) -> None:
    """Let Kong's connections go while idle (bounded), then end the process."""
    left = connections.drain(time.monotonic() + timeout, sleep)
    events = len(server.events)
    if left or events:
        log.warning("stopping with %d connection(s) open and %d event(s) in flight after %gs",
                    left, events, timeout)
    else:
        log.info("stopping: every connection let go, no event in flight")
    logging.shutdown()
    os._exit(0)


def _identity(path: str) -> tuple[int, int, int]:
    # Inode numbers are reused at once on some filesystems: the change time tells files apart.
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_ctime_ns


def _watchdog(parent: int, sleep: Any, stop: Any) -> None:
    # Kong spawns us; when it dies we are re-parented and must not linger holding the socket.
    while os.getppid() == parent:
        sleep(1.0)
    log.info("Kong (pid %d) is gone, exiting", parent)
    stop()


if __name__ == "__main__":
    sys.exit(main())
