"""A deliberately broken plugin, served by the real server in tests of its fault handling.

``config.fault`` picks the bug: ``raise_first`` raises before any PDK call, ``raise_later``
after one, ``headers`` just reads the headers (to feed it values that are not UTF-8),
``slow_io`` waits 0.2 s between two PDK calls as a Redis round trip would, ``hang`` waits
for an hour (a Redis server that never answers).
"""

from __future__ import annotations

import time
from typing import Any

version = "0.0.1"
priority = 955
Schema = ({"fault": {"type": "string"}},)


class Plugin:
    """Fails as configured."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.fault = config.get("fault")

    def access(self, kong: Any) -> None:
        """Raise before/after the first PDK call, or echo a header count upstream."""
        if self.fault == "raise_first":
            raise RuntimeError("bug before the first PDK call")
        headers = kong.request.get_headers()
        if self.fault == "raise_later":
            raise RuntimeError("bug after the first PDK call")
        if self.fault == "slow_io":
            time.sleep(0.2)  # gevent mode: monkey-patched, other requests run meanwhile
        if self.fault == "hang":
            time.sleep(3600)
        kong.service.request.set_headers({"x-seen-headers": str(len(headers or {}))})
