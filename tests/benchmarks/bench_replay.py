"""Replay benchmark: records per second of `kong-ace replay` on a large Kong file-log.

Run: .venv/bin/python tests/benchmarks/bench_replay.py [RECORDS] (default 1,000,000)
Writes a file-log of RECORDS Kong-shaped records (the example kong.yml's traffic: admitted,
limited, unregistered, unknown paths; about 900 bytes each, as kong/pdk/log.lua serializes them),
then replays it against an edited config: plain, gzip, and with --baseline. Prints records/s and
the time for a million records. Not a timed test: figures depend on the machine and its load.
"""

from __future__ import annotations

import copy
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from kong_ace.ops.replay import (  # noqa: E402
    Clock,  # noqa: E402
    Replayer,
    build_enforcer,
    replay,
)
from tests.conftest import PARTNER_KEY, SPECS, WEB_KEY  # noqa: E402

START = 1_780_000_000_000
TRAFFIC = [  # (uri, key, summary)
    ("/flights/v1/flights?from=LHR&to=JFK", WEB_KEY,
     {"outcome": "allowed", "reason": "allowed", "operation": "listFlights",
      "application": "web-app", "package": "flights-basic", "api": "flights", "remaining": 4}),
    ("/flights/v1/flights/BA117", WEB_KEY,
     {"outcome": "allowed", "reason": "allowed", "operation": "getFlight",
      "application": "web-app", "package": "flights-basic", "api": "flights", "remaining": 3}),
    ("/bookings/v2/bookings", PARTNER_KEY,
     {"outcome": "denied", "status": 403, "reason": "pending", "operation": "listBookings",
      "application": "partner-portal"}),
    ("/flights/v1/airports/LHR", None,
     {"outcome": "denied", "status": 401, "reason": "no_key", "operation": "getAirport"}),
    ("/nowhere", None, {"outcome": "denied", "status": 404, "reason": "no_operation"}),
]


def record(i: int) -> dict:
    uri, key, ace = TRAFFIC[i % len(TRAFFIC)]
    headers = {"host": "api.example.com", "user-agent": "curl/8.5.0", "accept": "*/*",
               "x-forwarded-for": f"10.0.{i % 250}.{i % 200}", "connection": "keep-alive"}
    if key:
        headers["apikey"] = key
    return {
        "request": {"id": f"{i:032x}", "uri": uri, "url": f"http://api.example.com:8000{uri}",
                    "querystring": {}, "method": "GET", "headers": headers, "size": 180},
        "upstream_uri": uri, "upstream_status": "200",
        "response": {"status": ace.get("status", 200), "size": 512,
                     "headers": {"content-type": "application/json", "content-length": "120",
                                 "via": "kong/3.9.1", "x-kong-proxy-latency": "1"}},
        "latencies": {"kong": 1, "proxy": 3, "request": 4, "receive": 0},
        "tries": [{"ip": "10.0.0.5", "port": 8080, "balancer_latency": 0}],
        "route": {"id": "4f1c", "name": "flights", "paths": ["/flights/v1"],
                  "protocols": ["http", "https"], "strip_path": False},
        "service": {"id": "9a2b", "name": "flights", "host": "flights.internal", "port": 8080,
                    "protocol": "http"},
        "client_ip": "10.0.0.1", "started_at": START + i * 7, "source": "upstream",
        "workspace": "0dc6", "workspace_name": "default", "ace": ace,
    }


def write_configs(folder: Path) -> tuple[Path, Path]:
    data = yaml.safe_load((ROOT / "kong.yml").read_text())
    ace = next(p for p in data["plugins"] if p["name"] == "ace")
    ace["config"]["specs_dir"] = str(SPECS)
    old = folder / "old.yml"
    old.write_text(yaml.safe_dump(data))
    new_data = copy.deepcopy(data)
    ace = next(p for p in new_data["plugins"] if p["name"] == "ace")
    ace["config"]["packages"][0]["rate_limits"] = [{"limit": 20, "duration": "seconds"}]
    new = folder / "new.yml"
    new.write_text(yaml.safe_dump(new_data))
    return old, new


def run(log: Path, new: Path, old: Path | None) -> tuple[float, float, int]:
    clock = Clock()
    replayer = Replayer(build_enforcer(str(new), None, clock), clock,
                        build_enforcer(str(old), None, clock) if old else None)
    start, cpu = time.perf_counter(), time.process_time()
    report = replay(replayer, [str(log)])
    return time.perf_counter() - start, time.process_time() - cpu, report.records


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        folder = Path(tmp)
        old, new = write_configs(folder)
        log = folder / "access.log"
        with log.open("w") as f:
            for i in range(n):
                f.write(json.dumps(record(i), separators=(",", ":")) + "\n")
        with open(log, "rb") as src, gzip.open(folder / "access.log.gz", "wb", 1) as dst:
            dst.write(src.read())
        size = log.stat().st_size
        print(f"{n:,} records, {size / n:.0f} bytes each ({size / 2**20:.0f} MiB)")
        for name, path, baseline in (("plain", log, None), ("gzip", folder / "access.log.gz",
                                                             None),
                                     ("--baseline", log, old)):
            seconds, cpu, records = run(path, new, baseline)
            assert records == n, (records, n)
            # Wall time is what a user waits; CPU time shows how much of it was other load.
            print(f"{name:>11}: {seconds:6.1f} s wall ({cpu:5.1f} s CPU)  "
                  f"{records / seconds:9,.0f} records/s  "
                  f"1M records in {1_000_000 * seconds / records:5.1f} s")


if __name__ == "__main__":
    main()
