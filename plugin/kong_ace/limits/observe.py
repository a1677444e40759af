"""Hooks through which the edge watches the rate-limit stores (limits never imports the edge).

A store reports what the edge cannot see from outside, such as its circuit breaker changing
state, by calling ``breaker_changed``; the plugin server registers a listener that turns it
into a metric and a line of ``kong-ace status``. Without a listener the calls cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable

# Circuit-breaker states, as the metrics and the status command show them.
CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
BREAKER_STATES = (CLOSED, HALF_OPEN, OPEN)

BreakerListener = Callable[[str, str], None]

_breaker_listeners: list[BreakerListener] = []


def on_breaker_change(listener: BreakerListener) -> None:
    """Call ``listener(store, state)`` whenever a store's circuit breaker changes state."""
    if listener not in _breaker_listeners:
        _breaker_listeners.append(listener)


def breaker_changed(store: str, state: str) -> None:
    """A store's circuit breaker is now ``state`` (one of BREAKER_STATES)."""
    for listener in list(_breaker_listeners):
        listener(store, state)
