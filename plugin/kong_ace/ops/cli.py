"""`kong-ace`: the operator's command line (a thin dispatcher; each command has its module)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

DEMO_MISSING = "the demo is not installed in this build (kong_ace.ops.demo is missing)"

# command -> "module:function"; imported only when run, so `keygen` does not load the core.
COMMANDS = {
    "keygen": "kong_ace.ops.keys:run_keygen",
    "hash-key": "kong_ace.ops.keys:run_hash_key",
    "check": "kong_ace.ops.check:run",
    "explain": "kong_ace.ops.explain:run",
    "status": "kong_ace.ops.status:run",
    "replay": "kong_ace.ops.replay:run",
}


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(prog="kong-ace", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="make a new API key and print its key_hash")
    p.add_argument("--app", metavar="ID", help="the application the key is for")
    _json_flag(p)

    p = sub.add_parser("hash-key", help="read an API key on stdin and print its key_hash")
    _json_flag(p)

    p = sub.add_parser("check", help="validate kong.yml and show which route carries each "
                                     "operation")
    p.add_argument("file", help="the declarative config (kong.yml)")
    p.add_argument("--specs-dir", help="override the ace config's specs_dir")
    p.add_argument("--strict", action="store_true", help="exit 1 when an operation is unmatched")
    _json_flag(p)

    p = sub.add_parser("explain", help="explain step by step what happens to one request")
    p.add_argument("file", help="the declarative config (kong.yml)")
    p.add_argument("method", help="HTTP method, e.g. GET")
    p.add_argument("path", help="request path as the client sends it, e.g. /flights/v1/flights")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="a request header (repeatable), e.g. 'Authorization: Bearer TOKEN'")
    p.add_argument("--query", action="append", default=[], metavar="K=V",
                   help="a query argument (repeatable)")
    p.add_argument("--consumer", help="the Kong consumer another auth plugin authenticated")
    p.add_argument("--host", help="the request's Host")
    p.add_argument("-d", "--data", metavar="BODY",
                   help="the request body (give its Content-Type with -H), e.g. '_method=PUT'")
    p.add_argument("--body-too-large", action="store_true",
                   help="the body could not be inspected (nginx spilled it to a file)")
    p.add_argument("--specs-dir", help="override the ace config's specs_dir")
    _json_flag(p)

    p = sub.add_parser("status", help="show what a running plugin server holds (instances, "
                                      "config hashes, stores)")
    p.add_argument("--socket", metavar="PATH",
                   help="the plugin server's Unix socket (default: $KONG_ACE_SOCKET, else "
                        "/usr/local/kong/ace.socket)")
    _json_flag(p)

    p = sub.add_parser("replay", help="re-decide recorded Kong logs (file-log/http-log JSON) "
                                      "under a new config and report what would change")
    p.add_argument("logs", nargs="+", metavar="LOG",
                   help="Kong file-log/http-log JSON lines (gzip accepted)")
    p.add_argument("--config", required=True, metavar="NEW_KONG_YML",
                   help="the declarative config to try")
    p.add_argument("--baseline", metavar="OLD_KONG_YML",
                   help="re-decide under this config too, instead of trusting the logged outcome")
    p.add_argument("--specs-dir", help="override the ace configs' specs_dir")
    p.add_argument("--examples", type=int, default=3, metavar="N",
                   help="example requests shown per change (default 3)")
    _json_flag(p)

    p = sub.add_parser("demo", help="run the demo", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _resolve(target: str) -> Callable[[argparse.Namespace], int]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def run_demo(argv: list[str]) -> int:
    """Hand over to kong_ace.ops.demo, which another part of the project provides."""
    try:
        demo = importlib.import_module("kong_ace.ops.demo")
    except ModuleNotFoundError as exc:
        if exc.name != "kong_ace.ops.demo":
            raise
        print(f"kong-ace: error: {DEMO_MISSING}", file=sys.stderr)
        return 2
    return int(demo.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `kong-ace` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        # The demo parses its own options.
        return run_demo(argv[1:])
    args = build_parser().parse_args(argv)
    return _resolve(COMMANDS[args.command])(args)


if __name__ == "__main__":
    sys.exit(main())
