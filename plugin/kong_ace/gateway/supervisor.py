"""`kong-ace-server --supervise`: hold the listening socket, run the server as a child.

For a plugin server Kong does not start itself (no ``pluginserver_ace_start_cmd``: with one,
Kong 3.9's Admin API ``GET /`` answers 500 and decK cannot talk to it). The supervisor binds
the Unix socket once and hands its file descriptor to each serving child, so while a child is
restarting Kong's connects wait in the listen backlog instead of being refused; a dead child is
restarted at once; SIGTERM/SIGINT stop the child (it drains its events) and then the supervisor;
SIGHUP restarts the child gracefully.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from kong_ace.gateway.server import _identity, listen, remove_if_ours

log = logging.getLogger("kong_ace.gateway.supervisor")

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOPPING = (signal.SIGTERM, signal.SIGINT)
QUICK_EXIT = 1.0  # a child that dies sooner than this after its start counts as a crash loop
FREE_RESTARTS = 3  # crash-loop restarts made at once before backing off
MAX_BACKOFF = 5.0
SUPERVISOR_ONLY = ("--supervise",)


def child_command(argv: list[str], fd: int) -> list[str]:
    """The serving child's command line: ours without ``--supervise``, plus the socket fd."""
    args = [a for a in argv if a not in SUPERVISOR_ONLY]
    return [sys.executable, "-m", "kong_ace.gateway.server", *args, "--listen-fd", str(fd)]


def backoff(quick_exits: int) -> float:
    """Seconds to wait before the next restart after ``quick_exits`` crash-loop exits in a row."""
    if quick_exits <= FREE_RESTARTS:
        return 0.0
    return float(min(MAX_BACKOFF, 0.1 * 2 ** (quick_exits - FREE_RESTARTS)))


def supervise(args: argparse.Namespace, argv: list[str], *,
              clock: Callable[[], float] = time.monotonic) -> int:
    """Bind the socket, then run and restart serving children until SIGTERM/SIGINT."""
    if not os.path.isdir(args.prefix):
        log.error("prefix %s does not exist, cannot create the unix socket", args.prefix)
        return 1
    path = os.path.join(args.prefix, args.socket_name)
    listener = listen(path, args.listen_queue_size)
    ours = _identity(path)
    fd = listener.fileno()
    state: dict[str, Any] = {"child": None, "stopping": False}

    def forward(signum: int, _frame: Any) -> None:
        if signum in STOPPING:
            state["stopping"] = True
        child = state["child"]
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    log.info("supervising the ace plugin server on %s (pid %d)", path, os.getpid())
    quick = 0
    try:
        while not state["stopping"]:
            started = clock()
            child = subprocess.Popen(child_command(argv, fd), pass_fds=(fd,))
            state["child"] = child
            log.info("serving child started, pid %d", child.pid)
            code = child.wait()
            if state["stopping"]:
                break
            quick = quick + 1 if clock() - started < QUICK_EXIT else 0
            delay = backoff(quick)
            log.warning("serving child %d exited (%s); restarting%s", child.pid, code,
                        f" in {delay:.1f}s" if delay else "")
            if delay:
                time.sleep(delay)  # a child failing at start-up must not spin the CPU
    finally:
        child = state["child"]
        if child is not None and child.poll() is None:
            child.wait()
        listener.close()
        remove_if_ours(path, ours)
    log.info("supervisor exiting")
    return 0
