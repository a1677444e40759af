"""A deliberately broken plugin, served by the real server in tests of its fault handling.

``config.fault`` picks the bug: ``raise_first`` raises before any PDK call, ``raise_later``
after one, ``headers`` just reads the headers (to feed it values that are not UTF-8).
"""

from __future__ import annotations

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
        kong.service.request.set_headers({"x-seen-headers": str(len(headers or {}))})
