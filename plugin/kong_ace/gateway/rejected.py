"""Telling Kong's error log, once, that a config ACE rejects is in force.

A config Kong's schema accepts but ACE rejects (compiled.py) either leaves the plugin on its
last good config or, with none, fails closed: 500 to every request. Either way Kong's error log
must say so exactly once per plugin and config, not once per request:

- fail closed: the first StartInstance of that config answers an error, which Kong logs
  (kong/runloop/plugin_servers/plugin.lua ``get_instance_id``: ``starting instance: ...``)
  and turns into a 500; every later StartInstance gets an instance that answers 500 itself,
  with no log line and no StartInstance round trip per request;
- last good config: the first request of an instance standing in for it calls
  ``kong.log.err`` (one PDK call, once).

The server's own log and ``kong-ace status`` / the metrics say the same thing every time.
"""

from __future__ import annotations

import threading

GUARD = "run `kong-ace check` on a config before applying it"
SERVING = ("ace: plugin {plugin}: config {config} rejected: {error}; still serving its last "
           "good config {serving} ({guard})")
# Appended to StartInstance's error for a rejected config with no last good one: Kong logs it.
FAILED = f"; no last good config: every request answers 500 until a config ACE accepts is " \
         f"applied ({GUARD})"


class Notices:
    """Which (plugin id, config hash) pairs Kong's error log has already been told about."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._told: dict[str | None, set[str]] = {}

    def first(self, plugin: str | None, config: str) -> bool:
        """True the first time for this pair (the caller tells Kong), then False."""
        with self._lock:
            told = self._told.setdefault(plugin, set())
            if config in told:
                return False
            told.add(config)
            return True

    def forget(self, plugin: str | None) -> None:
        """The plugin runs a good config again: its next rejection is news."""
        with self._lock:
            self._told.pop(plugin, None)


NOTICES = Notices()


def serving(plugin: str | None, config: str, error: str, good: str) -> str:
    """The error line for a rejected config while the last good one keeps deciding."""
    return SERVING.format(plugin=plugin, config=config[:12], error=error,
                          serving=good[:12], guard=GUARD)
