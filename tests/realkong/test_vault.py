"""Vault references in ace's config on a real Kong 3.9.1: the Redis password from Kong's env vault.

``rate_limiting.redis.password`` (and ``username``, ``sentinel_*``) are ``referenceable`` in
the schema the plugin server reports, as in Kong's own plugins: Kong resolves
``{vault://env/...}`` before StartInstance and sends the value with a ``$refs`` map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

from tests.gateway.support import KEYS, outcomes_config
from tests.realkong.kong import KongNode, Upstream, ace_config
from tests.redis_server import RedisServer, running

PASSWORD = "s3cret-redis-pw"


class PasswordRedis(RedisServer):
    """A redis-server that wants a password."""

    persistence = ("--appendonly", "no", "--requirepass", PASSWORD)

    def client(self) -> redis_py.Redis:
        return redis_py.Redis(host="127.0.0.1", port=self.port, password=PASSWORD,
                              socket_timeout=2)


@pytest.fixture(scope="module")
def redis_pw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordRedis]:
    with running(Path(tmp_path_factory.mktemp("redis")), PasswordRedis) as server:
        yield server


def limited(server: PasswordRedis, password_ref: str) -> dict[str, Any]:
    config = outcomes_config()
    config["rate_limiting"] = {
        "sync_rate": 0, "fault_tolerant": False,
        "redis": {"host": "127.0.0.1", "port": server.port, "password": password_ref}}
    return config


@pytest.mark.parametrize("mode", ["companion", "classic"])
def test_redis_password_from_the_env_vault(mode: str, kong_node: Callable[..., KongNode],
                                           upstream: Upstream, redis_pw: PasswordRedis) -> None:
    redis_pw.client().flushall()
    env = {"ACE_REDIS_PASSWORD": PASSWORD, "ACE_REDIS_WRONG": "not-the-password"}
    node = kong_node(ace_config(upstream.url, limited(redis_pw, "{vault://env/ace-redis-password}")),
                     mode=mode, env=env)
    seats = "/flights/v1/flights/BA1/seats"  # 2 per minute, counted in Redis (sync_rate 0)
    statuses = [node.request("GET", seats, {"apikey": KEYS["good"]}).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert redis_pw.client().dbsize() > 0  # the counters live in the password-protected Redis

    wrong = ace_config(upstream.url, limited(redis_pw, "{vault://env/ace-redis-wrong}"))
    status, body = node.post_config(wrong)
    assert status == 201, body
    r = node.request("GET", "/flights/v1/flights", {"apikey": KEYS["good"]})
    # A reference Kong resolved to a wrong password: Redis refuses, fault_tolerant is false.
    assert (r.status, r.json) == (500, {"message": "An unexpected error occurred"})
    node.cleanup()
