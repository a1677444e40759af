"""Where commands write: JSON for machines, rich tables for people, errors on stderr."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console

# Piped output is read by tools and pasted into docs: no wrapping at 80 columns.
PIPE_WIDTH = 240


def _console(stream: Any) -> Console:
    tty = stream.isatty()
    return Console(
        file=stream,
        no_color=bool(os.environ.get("NO_COLOR")) or not tty,
        highlight=False,
        width=None if tty else PIPE_WIDTH,
        soft_wrap=False,
    )


class Output:
    """One command's output channels."""

    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json
        self.console = _console(sys.stdout)
        self.errors = _console(sys.stderr)

    def json(self, data: Any) -> None:
        """Write one JSON document to stdout."""
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")

    def fail(self, message: str, code: int, hint: str | None = None, **extra: Any) -> int:
        """Report an error (stderr, or a JSON document on stdout) and return the exit code."""
        if self.as_json:
            self.json({"error": message, **extra, **({"hint": hint} if hint else {})})
        else:
            self.errors.print(f"error: {message}", style="bold red", markup=False)
            if hint:
                self.errors.print(f"hint: {hint}", markup=False)
        return code
