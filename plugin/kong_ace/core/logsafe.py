"""Log lines that an attacker cannot forge: control characters escaped, lengths bounded."""

from __future__ import annotations

import logging
from typing import Any

MAX_SHOWN = 200  # characters of one attacker-controlled value in a log line


def escape(value: Any, limit: int = MAX_SHOWN) -> str:
    """``value`` as text safe for one log line: no newline, no control or odd character."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    # unicode_escape writes '\n', '\x1b', '\udcff' (a surrogate from a non-UTF-8 byte)...
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace")
                   .decode("ascii") for c in text)


class EscapingFilter(logging.Filter):
    """Escapes every log message once formatted: no request can forge a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: leave it to the handler
            return True
        if not message.isprintable():
            # A message's own newlines are escaped too: one record is one line (a traceback
            # is formatted apart from the message and keeps its lines).
            record.msg = escape(message, len(message))
            record.args = None
        return True
