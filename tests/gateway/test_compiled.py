"""The compiled-config cache: last good config per plugin, cached failures, bounded size."""

from __future__ import annotations

import pytest

from kong_ace.errors import ConfigError
from kong_ace.gateway.compiled import CompiledCache, canonical_config, config_key
from kong_ace.limits.limiter import MemoryStorage
from tests.gateway.support import outcomes_config


def conf(pid: str, k: int, **extra: object) -> dict:
    config = outcomes_config(**extra)
    config["packages"].append({"name": f"p{k}", "operations": []})
    return {**config, "__plugin_id": pid, "__seq__": k}


def bad(pid: str) -> dict:
    config = conf(pid, 99)
    config["packages"][0]["operations"].append({"api": "nope"})
    return config


def test_unused_compiled_configs_are_bounded_and_last_good_ones_pinned() -> None:
    cache = CompiledCache(MemoryStorage(), idle_max=2)
    for k in range(6):
        cache.release(cache.acquire(conf("a", k)))  # an instance starts and closes
    # The last config of plugin "a" stays pinned as its last good one; at most 2 others idle.
    assert len(cache) == 1 and cache.status()["CompiledIdle"] == 2
    assert cache.compiles == 6
    entry = cache.acquire(conf("a", 4))  # idle: reused without compiling, now the last good
    assert cache.compiles == 6 and len(cache) == 1  # config 5 went idle in its place
    assert cache.status()["CompiledIdle"] == 2
    cache.release(entry)


def test_a_failure_is_compiled_once_and_served_by_the_last_good_config() -> None:
    clock = iter(range(100, 200)).__next__
    cache = CompiledCache(MemoryStorage(), clock=lambda: float(clock()))
    with pytest.raises(ConfigError) as info:
        cache.acquire(bad("a"))  # no last good config yet
    assert info.value.logged  # type: ignore[attr-defined]
    good = cache.acquire(conf("a", 1))
    for _ in range(5):
        assert cache.acquire(bad("a")) is good
    assert cache.compiles == 2  # the bad config once, the good once
    (rej,) = cache.rejections()
    assert rej.config_hash == config_key(canonical_config(bad("a")))
    assert rej.serving == good.key and rej.plugin_id == "a"
    assert good.users == 6
    other = cache.acquire(conf("b", 1))  # the same content for another plugin: shared
    assert other is good and [r.plugin_id for r in cache.rejections()] == ["a"]


def test_refs_and_dollar_keys_do_not_change_the_hash() -> None:
    plain = conf("a", 1)
    with_refs = conf("a", 1)
    with_refs["applications"][0]["$refs"] = {"x": "{vault://env/x}"}
    with_refs["$top"] = 1
    assert config_key(canonical_config(plain)) == config_key(canonical_config(with_refs))
