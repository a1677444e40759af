"""`kong-ace demo`: the example kong.yml served by the real plugin server, request by request.

Starts `kong-ace-server` on a Unix socket, drives it with the Kong-protocol harness as two nginx
workers would, and prints one line per request.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kong_ace.core.catalog import hash_key
from kong_ace.testing import KongNode, KongRequest, PluginServerProcess

REPO = Path(__file__).resolve().parents[3]

# The demo keys documented at the top of kong.yml (only their hashes are in the config).
DEMO_KEYS = {
    "web-app": "ace_web_pGS1PzevuWwCqQ8VdIDE49MqSKjfG0VF",
    "partner-portal": "ace_partner_oeA86pM1k4gy-nBGDpb-ueAM4lJg-Zpt",
}
MOBILE = {"id": "4b1f6a52-7c0e-4d2a-9a8e-0d6f2d1e5a01", "username": "mobile"}
# key-auth's credential for the mobile consumer (kong.client.get_credential()).
MOBILE_KEY = {"id": "0c5e8a8e-53f4-4bb4-9d3c-6f1c2a7e9b10", "consumer": {"id": MOBILE["id"]}}


@dataclass(frozen=True)
class Sample:
    """One demo request: who calls, how."""

    caller: str  # a DEMO_KEYS name, "mobile" (key-auth consumer), "nobody" or "stranger"
    method: str
    path: str


SAMPLES = (
    Sample("web-app", "GET", "/flights/v1/flights?from=LHR"),
    Sample("web-app", "GET", "/flights/v1/flights/BA117"),
    Sample("web-app", "GET", "/flights/v1/airports/JFK"),
    Sample("web-app", "GET", "/flights/v1/flights/BA117/seats"),
    Sample("web-app", "GET", "/flights/v1/flights/BA117/seats"),
    Sample("web-app", "GET", "/flights/v1/flights/BA117/seats"),
    Sample("web-app", "GET", "/flights/v1/flights/BA117/seats"),
    Sample("web-app", "POST", "/flights/v1/flights"),
    Sample("web-app", "DELETE", "/flights/v1/airports/JFK"),
    Sample("nobody", "GET", "/flights/v1/flights"),
    Sample("stranger", "GET", "/flights/v1/flights"),
    Sample("partner-portal", "GET", "/bookings/v2/bookings"),
    Sample("mobile", "GET", "/bookings/v2/bookings"),
    Sample("mobile", "POST", "/bookings/v2/bookings"),
    Sample("web-app", "GET", "/flights/v1/../../bookings/v2/bookings"),
    Sample("web-app", "GET", "/unknown/path"),
)


def ace_config(kong_yml: Path, specs_dir: Path) -> dict[str, Any]:
    """The global ace plugin's config from a kong.yml, with specs_dir pointed at ``specs_dir``."""
    doc = yaml.safe_load(kong_yml.read_text())
    for plugin in doc.get("plugins") or []:
        if plugin.get("name") == "ace":
            return {**plugin["config"], "specs_dir": str(specs_dir)}
    raise SystemExit(f"{kong_yml}: no global 'ace' plugin")


def request_for(sample: Sample) -> KongRequest:
    """The request a caller sends (the mobile app has been authenticated by key-auth)."""
    headers: dict[str, Any] = {"host": "api.example.com", "user-agent": "kong-ace-demo"}
    consumer = credential = None
    if sample.caller in DEMO_KEYS:
        headers["apikey"] = DEMO_KEYS[sample.caller]
    elif sample.caller == "stranger":
        headers["apikey"] = "ace_not_a_real_key"
    elif sample.caller == "mobile":
        headers["host"] = "mobile.example.com"
        consumer, credential = MOBILE, MOBILE_KEY
    return KongRequest(method=sample.method, path=sample.path, headers=headers,
                       host=headers["host"], consumer=consumer, credential=credential)


def replay(node: KongNode, samples: tuple[Sample, ...] = SAMPLES) -> Iterator[tuple[Sample, Any]]:
    """Send each sample, alternating between the node's workers."""
    for i, sample in enumerate(samples):
        yield sample, node.request(request_for(sample), worker=i % len(node.workers))


def line(sample: Sample, r: Any) -> str:
    """One printed line: request, caller, outcome, application, operation, quota left."""
    app = r.upstream("X-ACE-Application-ID") if r.proxied else None
    op = r.upstream("X-ACE-Operation-ID") if r.proxied else None
    remaining = r.headers.get("RateLimit-Remaining", "-")
    outcome = f"{r.status} {r.message}" if r.message else str(r.status)
    return (f"{sample.method:<6} {sample.path:<42} {sample.caller:<14} {outcome:<52} "
            f"app={app or '-':<12} op={op or '-':<16} remaining={remaining}")


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 when every request got an answer from the plugin."""
    p = argparse.ArgumentParser(prog="kong-ace demo", description=__doc__)
    p.add_argument("--config", type=Path, default=REPO / "kong.yml", help="kong.yml to load")
    p.add_argument("--specs", type=Path, default=REPO / "specs", help="OpenAPI files directory")
    p.add_argument("--mode", choices=("gevent", "threading"), default=None,
                   help="plugin server concurrency mode")
    p.add_argument("--classic", action="store_true",
                   help="without the Lua companions ace-context and ace-guard (classic mode)")
    args = p.parse_args(argv)
    config = ace_config(args.config, args.specs.resolve())
    known = {c.get("key_hash") for a in config.get("applications") or []
             for c in a.get("credentials") or []}
    for app, key in DEMO_KEYS.items():
        if f"sha256:{hash_key(key)}" not in known:
            print(f"note: the demo key of {app} is not in {args.config}", file=sys.stderr)
    server_args = ("--mode", args.mode) if args.mode else ()
    with PluginServerProcess(args=server_args) as server:
        node = KongNode(server.socket, config, workers=2, consumers=[MOBILE],
                        companions=not args.classic)
        mode = "classic mode" if args.classic else "with ace-context and ace-guard"
        print(f"kong-ace plugin server pid {server.pid}, socket {server.socket}, "
              f"2 simulated nginx workers, {mode}")
        failures = 0
        for sample, r in replay(node):
            print(line(sample, r))
            failures += bool(r.errors)
            for err in r.errors:
                print(f"    kong error log: {err}")
        node.close()
    print(f"{len(SAMPLES)} requests, {node.rpc_total} RPC round trips "
          f"({node.rpc_total / len(SAMPLES):.1f} per request)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
