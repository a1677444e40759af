"""`kong-ace keygen` and `kong-ace hash-key`: application keys and the hashes kong.yml keeps."""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys
from typing import TextIO

from kong_ace.core.catalog import KEY_HASH_PREFIX, hash_key
from kong_ace.ops.output import Output

KEY_PREFIX = "ace_"  # lets secret scanners recognise a leaked key
KEY_BYTES = 32  # bytes of entropy from secrets.token_urlsafe

EMPTY_KEY = "no key on standard input"
PROMPT = "API key (not echoed): "
SHOWN_ONCE = "API key (shown once; store it now, kong.yml keeps only its hash):"


def generate_key() -> str:
    """A new random API key with 32 bytes of entropy."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    """The `sha256:<hex>` value of a key's UTF-8 bytes, as `credentials[].key_hash` holds it."""
    return KEY_HASH_PREFIX + hash_key(key)


def credential_yaml(digest: str, app: str | None) -> str:
    """The credentials entry to paste into kong.yml."""
    where = f"applications[id={app}].credentials" if app else "an application's credentials"
    return f"# add to {where} in kong.yml:\n- key_hash: \"{digest}\"\n  status: active"


def run_keygen(args: argparse.Namespace) -> int:
    """Print a new key once, with its hash."""
    out = Output(args.json)
    key = generate_key()
    digest = key_hash(key)
    if args.json:
        out.json({"key": key, "key_hash": digest, "application": args.app})
        return 0
    out.console.print(SHOWN_ONCE, style="bold yellow")
    out.console.print(key, style="bold", markup=False, highlight=False)
    out.console.print()
    out.console.print(credential_yaml(digest, args.app), markup=False, highlight=False)
    return 0


def read_key(stream: TextIO | None = None) -> str:
    """One key from stdin; prompts without echo on a terminal so the key never shows."""
    stream = stream or sys.stdin
    raw = getpass.getpass(PROMPT) if stream.isatty() else stream.read()
    return raw.strip()


def run_hash_key(args: argparse.Namespace) -> int:
    """Print the hash of the key read from stdin."""
    out = Output(args.json)
    key = read_key()
    if not key:
        return out.fail(EMPTY_KEY, 2)
    digest = key_hash(key)
    if args.json:
        out.json({"key_hash": digest})
    else:
        out.console.print(f"key_hash: \"{digest}\"", markup=False, highlight=False)
    return 0
