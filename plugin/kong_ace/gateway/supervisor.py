"""`kong-ace-server --supervise`: hold the listening socket, run the server as a child.

For a plugin server Kong does not start itself (no ``pluginserver_ace_start_cmd``: with one,
Kong 3.9's Admin API ``GET /`` answers 500 and decK cannot talk to it). The supervisor binds
the Unix socket once and hands its file descriptor to each serving child, so while a child is
restarting Kong's connects wait in the listen backlog instead of being refused; a dead child is
restarted at once; SIGTERM/SIGINT stop the child (it lets Kong's connections go, drain.py) and
then the supervisor; SIGHUP starts a successor first and retires the old child once the
successor serves.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
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


def child_command(argv: list[str], fd: int, ready: int | None = None) -> list[str]:
    """The serving child's command line: ours without ``--supervise``, plus the socket fd."""
    args = [a for a in argv if a not in SUPERVISOR_ONLY]
    extra = [] if ready is None else ["--ready-fd", str(ready)]
    return [sys.executable, "-m", "kong_ace.gateway.server", *args, "--listen-fd", str(fd),
            *extra]


def backoff(quick_exits: int) -> float:
    """Seconds to wait before the next restart after ``quick_exits`` crash-loop exits in a row."""
    if quick_exits <= FREE_RESTARTS:
        return 0.0
    return float(min(MAX_BACKOFF, 0.1 * 2 ** (quick_exits - FREE_RESTARTS)))


class Child:
    """One serving child and the read end of its status pipe (``R`` ready, ``D`` draining)."""

    def __init__(self, argv: list[str], fd: int, clock: Callable[[], float]) -> None:
        r, w = os.pipe()
        self.proc = subprocess.Popen(child_command(argv, fd, w), pass_fds=(fd, w))
        os.close(w)
        os.set_blocking(r, False)
        self.status = r
        self.started = clock()
        self.ready = False
        self.draining = False
        log.info("serving child started, pid %d", self.proc.pid)

    def read_status(self) -> bytes:
        """What the child said since the last look (b"" if nothing)."""
        try:
            said = os.read(self.status, 64)
        except BlockingIOError:
            return b""
        except OSError:
            return b""
        self.ready = self.ready or b"R" in said
        self.draining = self.draining or b"D" in said
        return said

    def signal(self, signum: int) -> None:
        """Send ``signum`` if the child still runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def close(self) -> None:
        """Forget the status pipe."""
        with contextlib.suppress(OSError):
            os.close(self.status)


def supervise(args: argparse.Namespace, argv: list[str], *,
              clock: Callable[[], float] = time.monotonic) -> int:
    """Bind the socket, then run and restart serving children until SIGTERM/SIGINT.

    SIGHUP starts a successor and, once it serves, tells the old child to drain (SPEC §10):
    both serve the shared socket meanwhile, so no connect waits and no call is dropped. A child
    that starts draining on its own (a SIGTERM sent to it) gets its successor at once.
    """
    if not os.path.isdir(args.prefix):
        log.error("prefix %s does not exist, cannot create the unix socket", args.prefix)
        return 1
    path = os.path.join(args.prefix, args.socket_name)
    listener = listen(path, args.listen_queue_size)
    ours = _identity(path)
    fd = listener.fileno()
    flags = {"stop": False, "hup": False}
    wake_r, wake_w = os.pipe()  # the signal handler wakes the loop through it
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)

    def on_signal(signum: int, _frame: Any) -> None:
        flags["stop" if signum in STOPPING else "hup"] = True
        with contextlib.suppress(OSError):
            os.write(wake_w, b"!")

    for sig in FORWARDED:
        signal.signal(sig, on_signal)
    log.info("supervising the ace plugin server on %s (pid %d)", path, os.getpid())
    current: Child | None = None
    successor: Child | None = None
    retired: list[Child] = []
    quick = 0
    try:
        current = Child(argv, fd, clock)
        while not flags["stop"]:
            waiting = [c.status for c in (current, successor) if c is not None]
            with contextlib.suppress(InterruptedError):
                select.select([wake_r, *waiting], [], [], POLL)
            with contextlib.suppress(OSError):
                os.read(wake_r, 64)  # non-blocking: empties the self-pipe
            if flags["stop"]:
                break
            for child in (current, successor):
                if child is not None:
                    child.read_status()
            if current is not None and (flags["hup"] or current.draining) and successor is None:
                flags["hup"] = False
                successor = Child(argv, fd, clock)
            if successor is not None and successor.ready:
                if current is not None:
                    current.signal(signal.SIGTERM)  # drains: stops accepting, lets Kong go
                    retired.append(current)
                current, successor = successor, None
                log.info("serving child %d took over", current.proc.pid)
            if successor is not None and successor.proc.poll() is not None:
                log.warning("successor %d exited (%s) before serving; the old child stays",
                            successor.proc.pid, successor.proc.returncode)
                successor.close()
                successor = None
            for child in list(retired):
                if child.proc.poll() is not None:
                    child.close()
                    retired.remove(child)
            if current is not None and current.proc.poll() is None:
                continue
            if current is not None:  # died (killed, crashed, or drained on its own)
                quick = quick + 1 if clock() - current.started < QUICK_EXIT else 0
                delay = 0.0 if successor is not None else backoff(quick)
                log.warning("serving child %d exited (%s); %s", current.proc.pid,
                            current.proc.returncode,
                            "its successor serves" if successor is not None
                            else "restarting" + (f" in {delay:.1f}s" if delay else ""))
                current.close()
                if delay:
                    time.sleep(delay)  # a child failing at start-up must not spin the CPU
            current, successor = successor or Child(argv, fd, clock), None
    finally:
        for child in (current, successor, *retired):
            if child is not None:
                child.signal(signal.SIGTERM)
        for child in (current, successor, *retired):
            if child is not None:
                child.proc.wait()
                child.close()
        listener.close()
        remove_if_ours(path, ours)
    log.info("supervisor exiting")
    return 0


POLL = 0.05  # seconds between two looks at the children when nothing wakes the supervisor

