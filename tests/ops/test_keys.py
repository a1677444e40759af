"""keygen and hash-key: keys that authenticate, hashes that match, keys shown only once."""

from __future__ import annotations

import hashlib

from kong_ace import Enforcer, Request
from tests.conftest import WEB_KEY, example_config
from tests.ops.helpers import as_json, kong_ace


def sha(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def test_keygen_key_authenticates_through_the_core_with_the_printed_hash():
    made = as_json(kong_ace("keygen", "--app", "web-app", "--json"))
    config = example_config()
    web = next(a for a in config["applications"] if a["id"] == "web-app")
    web["credentials"] = [{"key_hash": made["key_hash"], "status": "active"}]
    decision = Enforcer(config).decide(
        Request("GET", "/flights/v1/flights", headers={"apikey": made["key"]}, service="flights"))
    assert decision.allowed and decision.application_id == "web-app"
    assert made["application"] == "web-app"


def test_keygen_keys_are_random_with_at_least_32_bytes_of_entropy():
    keys = {as_json(kong_ace("keygen", "--json"))["key"] for _ in range(3)}
    assert len(keys) == 3
    for key in keys:
        body = key.removeprefix("ace_")
        # token_urlsafe(32) is 43 base64url characters: 6 bits each, >= 256 bits.
        assert len(body) * 6 >= 256
        assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_keygen_text_shows_the_key_once_and_its_key_hash_line():
    proc = kong_ace("keygen", "--app", "partner-portal")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    key = next(line for line in lines if line.startswith("ace_"))
    assert proc.stdout.count(key) == 1
    assert f'- key_hash: "{sha(key)}"' in proc.stdout
    assert "applications[id=partner-portal].credentials" in proc.stdout


def test_hash_key_reads_stdin_and_prints_only_the_hash():
    key = "my-secret-key-\u00e9"
    proc = kong_ace("hash-key", stdin=key + "\n")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f'key_hash: "{sha(key)}"'
    assert key not in proc.stdout + proc.stderr
    assert as_json(kong_ace("hash-key", "--json", stdin=key)) == {"key_hash": sha(key)}


def test_hash_key_of_a_demo_key_is_the_hash_in_kong_yml():
    web = next(a for a in example_config()["applications"] if a["id"] == "web-app")
    got = as_json(kong_ace("hash-key", "--json", stdin=WEB_KEY))["key_hash"]
    assert got == web["credentials"][0]["key_hash"]


def test_hash_key_refuses_empty_input():
    proc = kong_ace("hash-key", stdin="  \n")
    assert proc.returncode == 2
    assert "no key on standard input" in proc.stderr
    assert proc.stdout == ""
