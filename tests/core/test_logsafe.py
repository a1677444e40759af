"""Log lines no request can forge: attacker-controlled strings are escaped (issue 20, item 6)."""

from __future__ import annotations

import io
import logging

from kong_ace.core.logsafe import EscapingFilter, escape


def test_escape_keeps_printable_text_and_escapes_the_rest() -> None:
    assert escape("plain text: é ü") == "plain text: é ü"
    assert escape("a\nERROR forged\r\x1b[31m") == "a\\nERROR forged\\r\\x1b[31m"
    assert escape("\udcff") == "\\udcff"  # a non-UTF-8 byte kept by surrogateescape
    assert escape("x" * 500, 10) == "x" * 10 + "..."


def test_the_filter_makes_every_record_one_line_but_keeps_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(EscapingFilter())
    log = logging.getLogger("kong_ace.test_logsafe")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("claim %s", "evil\nERROR kong: forged")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed for %s", "x\ny")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "claim evil\\nERROR kong: forged"
    assert lines[1] == "failed for x\\ny"
    assert lines[2].startswith("Traceback") and "ValueError: boom" in lines[-1]
