"""Scrape a plugin server's metrics listener and read the samples with prometheus_client."""

from __future__ import annotations

import socket
import urllib.request
from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kong_ace.testing import PluginServerProcess

Sample = tuple[str, frozenset[tuple[str, str]]]


def free_port() -> int:
    """A loopback port nobody listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics_server(*args: str, port: int | None = None, **kw: Any) -> PluginServerProcess:
    """A plugin server (not started) with its metrics listener on a free loopback port."""
    port = port or free_port()
    srv = PluginServerProcess(args=("--metrics-listen", f"127.0.0.1:{port}", *args), **kw)
    srv.metrics_port = port  # type: ignore[attr-defined]
    return srv


def scrape_text(port: int) -> str:
    """The exposition text of http://127.0.0.1:PORT/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()  # type: ignore[no-any-return]


def scrape(port: int) -> dict[Sample, float]:
    """Every sample: (name, labels) -> value."""
    out: dict[Sample, float] = {}
    for family in text_string_to_metric_families(scrape_text(port)):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def delta(before: dict[Sample, float], after: dict[Sample, float], name: str) -> Counter:
    """What changed in samples called ``name``, by their labels (zero changes left out)."""
    out: Counter = Counter()
    for (n, labels), value in after.items():
        if n == name:
            change = value - before.get((n, labels), 0.0)
            if change:
                out[labels] = change
    return out


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    """A label set, as scrape() keys it."""
    return frozenset(kw.items())
