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

NAME = "ace"
DEFAULT_MODE = "gevent"  # measured ~3x cheaper per request than threading (notes/issue-3.md)

METRICS_ENV = "KONG_ACE_METRICS_LISTEN"
METRICS_REMOTE_ENV = "KONG_ACE_METRICS_ALLOW_REMOTE"
METRICS_APPS_ENV = "KONG_ACE_METRICS_APPLICATIONS"

log = logging.getLogger("kong_ace.gateway.server")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """kong-pdk's dedicated-server command line, plus ``--mode``."""
    p = argparse.ArgumentParser(prog="kong-ace-server",
                                description="Kong plugin server for the ace plugin.")
    p.add_argument("-p", "--kong-prefix", "-kong-prefix", dest="prefix", default="/usr/local/kong/",
                   help="directory of the unix socket (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="count", default=1,
                   help="more logging (-vv: debug)")
    p.add_argument("--version", "-version", action="version", version="%(prog)s 0.1.0")
    p.add_argument("--socket-name", dest="socket_name", default=f"{NAME}.sock",
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
    if args.mode == "gevent":
        # Before anything opens sockets: Redis I/O in a handler must yield, not block the loop.
        from gevent import monkey

        monkey.patch_all()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose >= 2 else logging.INFO if args.verbose == 1
        else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.multiprocessing:
        log.warning("-m/--multiprocessing ignored: running in %s mode", args.mode)
    if not os.path.isdir(args.prefix):
        log.error("prefix %s does not exist, cannot create the unix socket", args.prefix)
        return 1
    path = os.path.join(args.prefix, args.socket_name)
    server = build_server(args.mode, args.plugin, args.event_timeout)
    if args.metrics_listen and not start_metrics(args, server):
        return 1
    return serve(path, server, args.mode, args.listen_queue_size)


def start_metrics(args: argparse.Namespace, server: Any) -> bool:
    """Record decisions and serve them on --metrics-listen; False (logged) if it cannot."""
    from kong_ace.gateway import metrics

    try:
        host, port = metrics.parse_listen(args.metrics_listen,
                                          allow_remote=args.metrics_allow_remote)
        recorder = metrics.enable(applications=args.metrics_applications)
        metrics.serve(host, port, server, recorder)
    except (ValueError, OSError) as exc:
        log.error("cannot serve metrics: %s", exc)
        return False
    return True


PLUGIN_MODULE = "kong_ace.gateway.plugin"


def build_server(mode: str, plugin: str = PLUGIN_MODULE, event_timeout: float = 30.0) -> Any:
    """The PluginServer for `ace`: the plugin module, with the event runner of ``mode``."""
    from kong_ace.gateway.events import EVENT_TYPES
    from kong_ace.gateway.rpc import PluginServer

    return PluginServer(NAME, importlib.import_module(plugin), EVENT_TYPES[mode], event_timeout)


def serve(path: str, server: Any, mode: str, backlog: int = 4096) -> int:
    """Listen on ``path`` and serve Kong until terminated or orphaned."""
    from kong_ace.gateway.rpc import Connection

    if os.path.exists(path):
        os.remove(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(backlog)
    ours = _identity(path)
    log.info("%s plugin server (%s mode) listening on %s", NAME, mode, path)

    def handle(conn: Any, *_: Any) -> None:
        try:
            Connection(conn, server).serve()
        except OSError as exc:
            log.debug("connection ended: %s", exc)
        finally:
            conn.close()

    def stop(*_: Any) -> None:
        # After a Kong reload a new server may already listen on this path: remove the socket
        # file only while it is still ours.
        with contextlib.suppress(OSError):
            if _identity(path) == ours:
                os.remove(path)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    parent = os.getppid()
    if mode == "gevent":
        import gevent
        from gevent.server import StreamServer

        gevent.spawn(_watchdog, parent, gevent.sleep, stop)
        StreamServer(listener, handle).serve_forever()
    else:
        threading.Thread(target=_watchdog, args=(parent, time.sleep, stop), daemon=True).start()
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    return 0


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
