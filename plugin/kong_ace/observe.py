"""Hooks through which the edge watches what happens below it (no layer imports the edge).

A rate-limit store reports its circuit breaker changing state with ``breaker_changed``; an auth
strategy reports each fetch from its identity provider (JWKS, discovery) with
``idp_fetched``. The plugin server registers listeners that turn these into metrics and lines
of ``kong-ace status``. Without listeners the calls cost a loop over an empty list.
"""

from __future__ import annotations

from collections.abc import Callable

# Circuit-breaker states, as the metrics and the status command show them.
CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
BREAKER_STATES = (CLOSED, HALF_OPEN, OPEN)

BreakerListener = Callable[[str, str], None]
FetchListener = Callable[[str, float, "str | None", str], None]

_breaker_listeners: list[BreakerListener] = []
_fetch_listeners: list[FetchListener] = []


def on_breaker_change(listener: BreakerListener) -> None:
    """Call ``listener(store, state)`` whenever a store's circuit breaker changes state."""
    if listener not in _breaker_listeners:
        _breaker_listeners.append(listener)


def breaker_changed(store: str, state: str) -> None:
    """A store's circuit breaker is now ``state`` (one of BREAKER_STATES)."""
    for listener in list(_breaker_listeners):
        listener(store, state)


def on_idp_fetch(listener: FetchListener) -> None:
    """Call ``listener(strategy, seconds, error, what)`` after every fetch from an IdP."""
    if listener not in _fetch_listeners:
        _fetch_listeners.append(listener)


def idp_fetched(strategy: str, seconds: float, error: str | None = None,
                what: str = "jwks") -> None:
    """Strategy ``strategy`` fetched ``what`` (jwks, discovery) from its IdP in ``seconds``;
    ``error`` names a failure (an exception class name, never a token)."""
    for listener in list(_fetch_listeners):
        listener(strategy, seconds, error, what)
