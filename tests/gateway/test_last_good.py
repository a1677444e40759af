"""The last good config on disk (SPEC §10): survives a restart, owner-only, no vault secrets."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from kong_ace.errors import ConfigError
from kong_ace.gateway.compiled import CompiledCache
from kong_ace.gateway.last_good import LastGoodFiles, protect, resolve
from kong_ace.limits.limiter import MemoryStorage
from kong_ace.testing import KongNode, PluginServerProcess
from tests.gateway.support import MOBILE, get, outcomes_config
from tests.gateway.test_compiled import bad, conf

SECRET = "s3cret-from-the-vault"


def with_vault_password(config: dict) -> dict:
    """What Kong sends for a Redis password given as a vault reference: resolved + $refs."""
    config = dict(config)
    config["rate_limiting"] = {"redis": {"host": "127.0.0.1", "port": 1, "password": SECRET,
                                         "$refs": {"password": "{vault://env/ace-redis-pw}"}}}
    return config


def restarted(directory: Path, env: dict[str, str] | None = None) -> CompiledCache:
    """A fresh process's cache reading the same directory."""
    cache = CompiledCache(MemoryStorage())
    cache.keep_on_disk(LastGoodFiles(str(directory), env=env or {}))
    return cache


def test_a_restarted_server_serves_the_last_good_config_instead_of_500(tmp_path: Path) -> None:
    store = tmp_path / "last-good"
    first = restarted(store)
    good = first.acquire(conf("a", 1))
    # A new process while Kong's current config is one ACE rejects. Before: ConfigError, so
    # Kong's StartInstance failed and every request was answered 500.
    second = restarted(store)
    served = second.acquire(bad("a"))
    assert served.key == good.key
    (rej,) = second.rejections()
    assert rej.serving == good.key
    assert second.acquire(bad("a")) is served  # compiled once
    # Without a file (another plugin id, or the feature off): no last good config, a 500.
    with pytest.raises(ConfigError):
        second.acquire(bad("b"))
    with pytest.raises(ConfigError):
        CompiledCache(MemoryStorage()).acquire(bad("a"))


def test_files_are_owner_only_written_atomically_and_rewritten_only_on_change(
        tmp_path: Path) -> None:
    store = tmp_path / "last-good"
    store.mkdir(mode=0o755)  # too open: tightened
    cache = restarted(store)
    cache.acquire(conf("a", 1))
    (file,) = store.iterdir()
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    doc = json.loads(file.read_text())
    assert doc["plugin_id"] == "a" and "__seq__" not in doc["config"]
    first = file.stat().st_mtime_ns
    cache.acquire(conf("a", 1))  # the same config again (another worker): not rewritten
    assert file.stat().st_mtime_ns == first
    cache.acquire(conf("a", 2))
    assert json.loads(file.read_text())["config_hash"] != doc["config_hash"]
    assert [p.name for p in store.iterdir()] == [file.name]  # no temporary file left
    # Named by a hash of the plugin id: an id never becomes a path outside the directory.
    assert os.path.dirname(LastGoodFiles(str(store)).path("../../etc/passwd")) == str(store)


def test_a_vault_resolved_secret_is_stored_as_its_reference(tmp_path: Path) -> None:
    store = tmp_path / "last-good"
    config = with_vault_password(conf("a", 1))
    good = restarted(store).acquire(config)
    text = "".join(p.read_text() for p in store.iterdir())
    assert SECRET not in text and "{vault://env/ace-redis-pw}" in text
    # Resolved again from the environment of the next process (Kong's env vault naming).
    again = restarted(store, env={"ACE_REDIS_PW": SECRET}).acquire(bad("a"))
    assert again.key == good.key
    # Not resolvable there: the file is not used (no guessing a password).
    with pytest.raises(ConfigError):
        restarted(store, env={}).acquire(bad("a"))


def test_protect_and_resolve_round_trip() -> None:
    config = with_vault_password({"x": [{"y": 1}]})
    stored = protect(config)
    assert stored["rate_limiting"]["redis"]["password"] == "{vault://env/ace-redis-pw}"
    assert resolve(stored, {"ACE_REDIS_PW": SECRET}) == config


def test_a_restarted_plugin_server_keeps_deciding_with_the_last_good_config() -> None:
    # The real server process, restarted on the same prefix while Kong's config is rejected.
    with PluginServerProcess() as first:
        node = KongNode(first.socket, outcomes_config(), workers=1, consumers=[MOBILE])
        assert get(node, "/flights/v1/flights", "good").status == 200
        node.close()
        prefix = first.prefix
        store = Path(prefix) / "kong-ace-last-good"
        assert [stat.S_IMODE(p.stat().st_mode) for p in store.iterdir()] == [0o600]
        rejected = outcomes_config()
        rejected["packages"][0]["operations"].append({"api": "nope"})
        first.proc.kill()  # type: ignore[union-attr]
        first.proc.wait(timeout=10)  # type: ignore[union-attr]
        with PluginServerProcess(prefix=prefix) as second:
            node = KongNode(second.socket, rejected, workers=1, consumers=[MOBILE])
            node.plugin_id = _plugin_id(store)  # Kong's plugin entity: the same id
            node.configure(rejected)
            assert get(node, "/flights/v1/flights", "good").status == 200
            assert get(node, "/flights/v1/flights", None).status == 401
            node.close()
            assert "kept on disk by a previous server process" in second.log
        with PluginServerProcess(prefix=prefix, args=("--last-good-dir", "off")) as third:
            node = KongNode(third.socket, rejected, workers=1, consumers=[MOBILE])
            node.plugin_id = _plugin_id(store)
            node.configure(rejected)
            assert get(node, "/flights/v1/flights", "good").status == 500  # the old behaviour
            node.close()


def _plugin_id(store: Path) -> str:
    (file,) = store.iterdir()
    return json.loads(file.read_text())["plugin_id"]  # type: ignore[no-any-return]
