"""The Grafana dashboard is built on the metrics the real server exposes, all of them."""

from __future__ import annotations

import json
import re

from tests.gateway.scrape import metrics_server, scrape_text
from tests.gateway.support import REPO

DASHBOARD = REPO / "plugin" / "grafana" / "kong-ace-dashboard.json"
SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exposed() -> dict[str, set[str]]:
    """kong_ace family name -> the sample names the server exposes for it."""
    with metrics_server() as srv:
        text = scrape_text(srv.metrics_port)  # type: ignore[attr-defined]
    out = {}
    for name, kind in re.findall(r"^# TYPE (kong_ace_\w+) (\w+)$", text, re.M):
        out[name] = {name + s for s in SUFFIXES[kind]}
    return out


def test_every_query_names_an_exposed_metric_and_every_metric_has_a_panel() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\bkong_ace_\w+", e)}
    families = exposed()
    samples = set().union(*families.values())
    assert used - samples == set()
    unused = {f for f, names in families.items() if not names & used}
    assert unused == set()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"]
               if p["type"] != "row")
