"""API version lifecycle: deprecation and sunset dates, and the response headers they add.

- ``Deprecation`` (RFC 9745 §2): an Item structured field whose value is an sf-date (RFC 9651
  §3.3.7), ``@`` and integer seconds since the epoch, e.g. ``Deprecation: @1688169599``.
- ``Sunset`` (RFC 8594 §3): an HTTP-date (IMF-fixdate, RFC 9110 §5.6.7), e.g.
  ``Sunset: Sun, 30 Jun 2024 23:59:59 GMT``; RFC 9745 §4: never earlier than the deprecation.
- ``Link: <URI>; rel="deprecation"`` (RFC 9745 §3) names the page about the deprecation.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

SUNSET_ACTIONS = ("warn", "refuse")
# RFC 9745 has no date-less form: `deprecated: true` sends the earliest date, read by clients as
# "deprecated since before now" (documented in docs/concepts.md).
UNDATED = 0.0


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """The lifecycle of one API version, compiled once; ``headers`` go on every response."""

    api: str
    deprecated_at: float | None  # None: not deprecated; UNDATED: `deprecated: true`
    sunset_at: float | None
    link: str | None
    refuse: bool  # sunset_action: refuse (410 Gone once the sunset has passed)
    headers: dict[str, str]

    @property
    def deprecated(self) -> bool:
        """Whether the API is deprecated (now, or from a date)."""
        return self.deprecated_at is not None

    def gone(self, now: float) -> bool:
        """Whether a request at ``now`` is refused (410): the sunset has passed and says so."""
        return self.refuse and self.sunset_at is not None and now >= self.sunset_at


def deprecation_value(at: float) -> str:
    """The RFC 9745 ``Deprecation`` value: an sf-date, ``@`` and integer epoch seconds."""
    return f"@{int(at)}"


def sunset_value(at: float) -> str:
    """The RFC 8594 ``Sunset`` value: an IMF-fixdate in GMT."""
    return formatdate(int(at), usegmt=True)


def link_value(uri: str) -> str:
    """The RFC 8288 ``Link`` value pointing at the deprecation's documentation."""
    return f'<{uri}>; rel="deprecation"'


def build(api: str, deprecated_at: float | None, sunset_at: float | None, link: str | None,
          action: str) -> Lifecycle | None:
    """The compiled lifecycle, or None for an API with none (the usual case: zero cost)."""
    if deprecated_at is None and sunset_at is None:
        return None
    headers: dict[str, Any] = {}
    if deprecated_at is not None:
        headers["Deprecation"] = deprecation_value(deprecated_at)
        if link is not None:
            headers["Link"] = link_value(link)
    if sunset_at is not None:
        headers["Sunset"] = sunset_value(sunset_at)
    return Lifecycle(api, deprecated_at, sunset_at, link, action == "refuse", headers)
