"""Running a plugin phase as an event Kong steps through, one PDK call per round trip.

A handler runs until it makes a PDK call; the call goes to Kong as the reply to HandleEvent or
Step, and Kong's next Step carries the result back into the handler. Two runners:

- ``GreenletEvent``: the handler is a raw greenlet switched to and from directly (no thread,
  no queue, no hub hop); used by the gevent server, where every connection shares one thread.
- ``ThreadEvent``: one OS thread per event and two queues; used by the threading server.

Both turn a handler that raises into ``kong.response.exit(500)``, so a bug never fails open
and never leaves Kong waiting (kong-pdk 0.36 wedges every later event in that case).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from greenlet import GreenletExit, getcurrent, greenlet

monotonic = time.monotonic

log = logging.getLogger("kong_ace.gateway.server")

RET = "ret"
TERMINAL = frozenset({"kong.response.exit", "kong.response.error"})
ERROR_EXIT = {"Method": "kong.response.exit",
              "Args": [500, {"message": "An unexpected error occurred"}]}

# (done, data): data is a PDK call {"Method", "Args"} or, when done, "ret" or a terminal call.
Output = tuple[bool, Any]
Handler = Callable[[Any], Any]

# Kong waits 60 s (lua_socket_read_timeout) for each answer, then logs and lets the request
# through: a handler silent for this long is abandoned and the request answered 500 first.
DEFAULT_TIMEOUT = 30.0


class PDKError(Exception):
    """Kong answered a PDK call with an error (plugin.StepError)."""


class EventTimeout(Exception):
    """The handler did not reach its next PDK call in time."""


# The event whose handler runs in each greenlet (threading mode: each thread's own greenlet).
_RUNNING: dict[Any, Event] = {}


class _Node:
    """``kong.x.y`` path; calling it makes the PDK call ``kong.x.y(...)`` for the running event.

    One tree serves every event (building a tree per event cost ~10 us a request): a call
    finds its event by the greenlet it runs in, so it can never reach another request. A child
    is kept as an attribute once made: later lookups never reach ``__getattr__``.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Node:
        if attr.startswith("__"):
            raise AttributeError(attr)
        # setdefault: two threads (threading mode) making the same child agree on one.
        return self.__dict__.setdefault(attr, _Node(f"{self._name}.{attr}"))  # type: ignore

    def __call__(self, *args: Any) -> Any:
        event = _RUNNING.get(getcurrent())
        if event is None:
            raise PDKError(f"{self._name} called outside a running event")
        return event.pdk(self._name, args)


KONG = _Node("kong")


def current_event() -> Event | None:
    """The event whose handler runs here (its PDK calls so far, its exit call), if any."""
    return _RUNNING.get(getcurrent())


def last_call(call: Any, *args: Any) -> Any:
    """Make the PDK call ``call(*args)`` as the handler's last one (see Event).

    Returns None at once on this server; elsewhere (kong-pdk's server, whose PDK is not
    ours) it is the plain call. A PDK call after it fails the handler: a 500.
    """
    if type(call) is _Node:
        event = _RUNNING.get(getcurrent())
        if event is not None:
            return event.finish_with(call._name, args)
    return call(*args)


class Event:
    """One phase of one request; subclasses decide how the handler is suspended.

    Two ways to spare round trips into the handler (each costs two greenlet switches and the
    Python around them: ~6k instructions, 8% of a no-op companion request, callgrind):

    - a declared first call (``defer``): HandleEvent answers the plugin's declared first PDK
      call (a read) itself, and the handler starts at the next Step with that call's answer
      at hand; a handler whose first call is another one makes it as usual (the read's answer
      is dropped);
    - a last call (``last_call``): the handler goes on at once as if the call returned None;
      the call is Kong's answer once the handler has ended, and Kong's next Step is answered
      "ret" without resuming anything (or a 500 exit if Kong answered that call an error).
    """

    # Slots: one event per request, its attributes read at every switch.
    __slots__ = ("id", "handler", "timeout", "created", "exit_call", "calls", "first",
                 "prefetched", "last", "closing")

    def __init__(self, eid: int, handler: Handler, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.id = eid
        self.handler = handler
        self.timeout = timeout
        self.created = time.monotonic()
        self.exit_call: dict[str, Any] | None = None
        self.calls = 0  # PDK calls made so far (metrics: round trips per request)
        self.first: tuple[str, tuple[Any, ...]] | None = None  # declared, handler not started
        self.prefetched: tuple[Any, Any] | None = None  # (data, err) of the declared call
        self.last: dict[str, Any] | None = None  # the handler's last call (last_call)
        self.closing = False  # the handler ended with ``last``: Kong's next Step ends it

    def defer(self, method: str, args: tuple[Any, ...]) -> None:
        """Kong is sent the declared first call ``method(*args)``; the handler starts later."""
        self.first = (method, args)
        self.calls = 1

    def _begin(self, data: Any, err: Any) -> Output:
        # Kong's answer to the declared first call: start the handler with it at hand.
        self.prefetched = (data, err)
        return self.start()

    def _close(self, err: Any) -> Output:
        # Kong's Step after the handler's last call: nothing left to run.
        self.closing = False
        if err is not None:
            log.error("event %d: Kong answered the last call %s with an error (%s); "
                      "answering 500", self.id, self.last and self.last["Method"], err)
            return True, ERROR_EXIT
        return True, RET

    def _ended(self, method: str) -> None:
        if self.exit_call is not None:
            raise PDKError(f"{method} after kong.response.exit: Kong has ended the request")
        raise PDKError(f"{method} after the last call: the handler has ended for Kong")

    def _take_prefetched(self, method: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        # (True, answer) when this is the declared first call; the answer goes either way.
        first, answer = self.first, self.prefetched
        self.first = self.prefetched = None
        if first is None or answer is None or first[0] != method or first[1] != args:
            return False, None
        data, err = answer
        if err is not None:
            raise PDKError(f"{method}: {err}")
        return True, data

    def finish_with(self, method: str, args: tuple[Any, ...]) -> Any:
        """Called by the handler through ``last_call``: its last PDK call."""
        if method in TERMINAL:
            return self.pdk(method, args)
        if self.exit_call is not None or self.last is not None:
            self._ended(method)
        self.calls += 1
        if self.prefetched is not None:
            self.first = self.prefetched = None  # the declared call was not made: dropped
        self.last = {"Method": method, "Args": list(args)}
        return None

    def pdk(self, method: str, args: tuple[Any, ...]) -> Any:
        """Called by the handler: make one PDK call and return Kong's answer."""
        if self.exit_call is not None or self.last is not None:
            self._ended(method)
        if self.prefetched is not None:
            found, data = self._take_prefetched(method, args)
            if found:
                return data
        self.calls += 1
        call = {"Method": method, "Args": list(args)}
        if method in TERMINAL:
            # Kong runs exit and never steps back (the Lua coroutine ends): no reply to wait
            # for. The event ends when the handler returns; its last word is this call.
            self.exit_call = call
            return None
        data, err = self._suspend(call)
        if err is not None:
            raise PDKError(f"{method}: {err}")
        return data

    def _run(self) -> Output:
        me = getcurrent()
        _RUNNING[me] = self
        try:
            self.handler(KONG)
        except GreenletExit:
            raise
        except BaseException as exc:  # noqa: BLE001 - a plugin bug must not fail open
            log.error("handler failed (%s); answering 500", type(exc).__name__,
                      exc_info=not isinstance(exc, PDKError))
            return True, self.exit_call or ERROR_EXIT
        finally:
            _RUNNING.pop(me, None)
        last = self.last
        if last is not None:  # never with exit_call: whichever came second raised
            self.closing = True
            return True, last
        return True, self.exit_call or RET

    def start(self) -> Output:
        """Run the handler to its first PDK call or its end."""
        raise NotImplementedError

    def resume(self, data: Any, err: Any = None) -> Output:
        """Hand Kong's answer to the pending PDK call; run to the next call or the end."""
        raise NotImplementedError

    def _suspend(self, call: dict[str, Any]) -> tuple[Any, Any]:
        raise NotImplementedError

    def cancel(self) -> None:
        """Kong will never step this event again: release what it holds."""


# Idle handler greenlets, reused: a new greenlet costs a 16 KiB frame stack of its own on
# CPython 3.11+ (an mmap and munmap per event, and its page faults, seen with strace under
# Kong load). A greenlet returns here only once its handler has ended normally.
_IDLE: list[greenlet] = []
MAX_IDLE = 256


def _handler_loop(event: GreenletEvent) -> Output:
    # Runs events one after another: each event's end goes back to whoever resumed it last,
    # and the next event arrives as the value of that switch.
    me = getcurrent()
    while True:
        out = event._run()
        if len(_IDLE) >= MAX_IDLE:
            return out  # the greenlet ends: its parent's switch() returns out
        _IDLE.append(me)
        event = me.parent.switch(out)


class _Deadlines:
    """Handlers running past their deadline, found by one periodic libev timer.

    Cheaper than a timer per event started and stopped at each of its switches. The timer's
    callback runs in the hub, as that of a per-event timer did: it fires only while the handler
    waits on gevent I/O (the hub runs then), and throws into the greenlet waiting for it.
    """

    def __init__(self) -> None:
        # Events started and not ended; each one's ``waiter`` is set while its handler runs.
        # An event joins once and leaves once: cheaper than joining at each switch.
        self.live: dict[GreenletEvent, None] = {}
        self.timer: Any = None
        self.period = 1.0

    def arm(self, timeout: float) -> None:
        """Make sure the timer runs, often enough for ``timeout``."""
        if self.timer is None or timeout / 4 < self.period:
            self._start(timeout)

    def _start(self, timeout: float) -> None:
        from gevent import get_hub  # not at import: the server monkey-patches first

        self.period = min(1.0, max(timeout / 4, 0.01))
        if self.timer is not None:
            self.timer.close()
        self.timer = get_hub().loop.timer(self.period, self.period)
        self.timer.start(self._expire)

    def _expire(self) -> None:
        now = monotonic()
        late = [e for e in self.live if e.waiter is not None and e.deadline <= now]
        for event in late:
            waiter = event.waiter
            if waiter is not None:  # an earlier throw may have let it end meanwhile
                event.waiter = None
                waiter.throw(EventTimeout)


_DEADLINES = _Deadlines()
_LIVE = _DEADLINES.live


class GreenletEvent(Event):
    """Handler in a raw greenlet; every switch returns to whoever resumed it.

    In companion mode a request reaches the handler once (first and last calls, see Event):
    every other message is answered without a switch.
    """

    __slots__ = ("_g", "waiter", "deadline")

    def __init__(self, eid: int, handler: Handler, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(eid, handler, timeout)
        self._g: Any = None
        self.waiter: Any = None  # the greenlet waiting for the handler, while it runs
        self.deadline = 0.0

    def start(self) -> Output:
        self._g = _IDLE.pop() if _IDLE else greenlet(_handler_loop)
        timeout = self.timeout
        if timeout / 4 < _DEADLINES.period or _DEADLINES.timer is None:
            _DEADLINES.arm(timeout)
        _LIVE[self] = None
        return self._switch(self)

    def resume(self, data: Any, err: Any = None) -> Output:
        if self._g is None:  # not started yet, ended with a last call, or cancelled
            if self.first is not None:
                return self._begin(data, err)
            if self.closing:
                return self._close(err)
            return True, ERROR_EXIT
        return self._switch((data, err))

    def _switch(self, value: Any) -> Output:
        # Kong may send the next Step on another connection (another greenlet): make that one
        # the parent, so the handler's next call (or its end) returns there.
        current = getcurrent()
        g = self._g
        if g is None:  # cancelled (timed out): Kong stepped it anyway
            return True, ERROR_EXIT
        g.parent = current
        self.deadline = monotonic() + self.timeout
        self.waiter = current
        try:
            out = g.switch(value)
        except EventTimeout:
            out = None
        self.waiter = None
        if out is None:
            return self._timed_out()
        if out[0]:
            self._g = None  # back in _IDLE, or ended: no longer this event's
            _LIVE.pop(self, None)
            if self.closing:  # its last call: Kong answers it, then steps once more
                return False, out[1]
        return out

    def _timed_out(self) -> Output:
        log.error("event %d: handler silent for %gs; answering 500", self.id, self.timeout)
        self.cancel()
        return True, ERROR_EXIT

    def _suspend(self, call: dict[str, Any]) -> tuple[Any, Any]:
        return self._g.parent.switch((False, call))  # type: ignore[no-any-return]

    def cancel(self) -> None:
        _LIVE.pop(self, None)
        self.waiter = None
        g = self._g
        if g is not None and not g.dead:
            self._g = None
            g.parent = getcurrent()
            g.throw(GreenletExit)


class ThreadEvent(Event):
    """Handler in its own OS thread, talking through two queues (kong-pdk's model)."""

    __slots__ = ("_to_handler", "_to_kong")

    def __init__(self, eid: int, handler: Handler, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(eid, handler, timeout)
        self._to_handler: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._to_kong: queue.SimpleQueue[Output] = queue.SimpleQueue()

    def start(self) -> Output:
        t = threading.Thread(target=self._thread_main, name=f"event-{self.id}", daemon=True)
        t.start()
        return self._wait()

    def resume(self, data: Any, err: Any = None) -> Output:
        if self.first is not None:
            return self._begin(data, err)
        if self.closing:
            return self._close(err)
        self._to_handler.put((data, err))
        return self._wait()

    def _thread_main(self) -> None:
        with contextlib.suppress(GreenletExit):  # cancelled: Kong will never step again
            self._to_kong.put(self._run())

    def _wait(self) -> Output:
        try:
            out = self._to_kong.get(timeout=self.timeout)
        except queue.Empty:
            log.error("event %d: handler silent for %gs; answering 500", self.id, self.timeout)
            self.cancel()
            return True, ERROR_EXIT
        if out[0] and self.closing:  # its last call: Kong answers it, then steps once more
            return False, out[1]
        return out

    def _suspend(self, call: dict[str, Any]) -> tuple[Any, Any]:
        self._to_kong.put((False, call))
        answer = self._to_handler.get()
        if answer is None:
            raise GreenletExit()
        return answer  # type: ignore[no-any-return]

    def cancel(self) -> None:
        self._to_handler.put(None)


EVENT_TYPES: dict[str, type[Event]] = {"gevent": GreenletEvent, "threading": ThreadEvent}
