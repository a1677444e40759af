"""Rate limits through Enforcer.decide: exact under threads and nodes, and Redis outages."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kong_ace import Enforcer, Request
from kong_ace.limits.limiter import Limit, build_limiter
from kong_ace.limits.storage import MemoryStorage

from ..conftest import WEB_KEY, example_config
from .conftest import T0, Clock, RedisServer

FLIGHTS = {"id": "0b6b", "name": "flights"}


def list_flights() -> Request:
    return Request("GET", "/flights/v1/flights", headers={"apikey": WEB_KEY}, service=FLIGHTS)


def config_with(limit: int, **rate_limiting: Any) -> dict[str, Any]:
    """The example config, web-app's package limited to `limit` per minute."""
    config = example_config()
    config["packages"][0]["rate_limits"] = [{"limit": limit, "duration": "minutes"}]
    config["rate_limiting"].update(rate_limiting)
    return config


@pytest.fixture(autouse=True)
def fast_switching() -> Iterator[None]:
    """Switch threads often, so unsynchronised check-then-charge code would interleave."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def hammer(calls: list[Callable[[], bool]], per_thread: int) -> int:
    """Run each call per_thread times on its own thread, started together; count admissions."""
    admitted = [0] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        admitted[i] = sum(calls[i]() for _ in range(per_thread))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(admitted)


@pytest.mark.parametrize("window_type", ["fixed", "sliding"])
def test_memory_limiter_admits_exactly_n_under_threads(window_type: str) -> None:
    clock = Clock(T0 + 1)
    limiter = build_limiter({"window_type": window_type}, clock=clock, storage=MemoryStorage())
    limits = (Limit(2000, 60), Limit(100_000, 3600))
    # A race (lost update, or check-then-charge) shows in most rounds of this size without the
    # store's lock; ten rounds make a silent pass of broken code very unlikely.
    for round_ in range(10):
        key = f"app|pkg:{round_}"
        calls = [lambda key=key: limiter.consume(key, limits).allowed] * 16
        assert hammer(calls, 200) == 2000


def test_one_process_storage_is_shared_by_every_plugin_instance() -> None:
    # Kong starts one instance per nginx worker, and new ones on every config change.
    clock, root = Clock(T0 + 1), MemoryStorage()
    workers = [Enforcer(config_with(5), clock=clock, storage=root) for _ in range(4)]
    assert sum(w.decide(list_flights()).allowed for w in workers for _ in range(3)) == 5


def test_redis_is_exact_across_two_gateway_nodes(redis_db: RedisServer) -> None:
    clock = Clock(T0 + 1)
    config = config_with(60, sync_rate=0, redis=redis_db.settings)
    nodes = [Enforcer(config, clock=clock, storage=MemoryStorage()) for _ in range(2)]
    calls = [lambda n=n: n.decide(list_flights()).allowed for n in nodes for _ in range(6)]
    assert hammer(calls, 15) == 60  # 180 requests from 12 threads on 2 nodes


@pytest.mark.parametrize("tolerant", [True, False])
def test_redis_stopped_mid_run(redis_db: RedisServer, caplog: pytest.LogCaptureFixture,
                               tolerant: bool) -> None:
    clock = Clock(T0 + 1)
    config = config_with(3, sync_rate=0, redis=redis_db.settings, fault_tolerant=tolerant)
    enf = Enforcer(config, clock=clock, storage=MemoryStorage())
    assert [enf.decide(list_flights()).status for _ in range(4)] == [None, None, None, 429]

    redis_db.stop()
    with caplog.at_level(logging.WARNING, logger="kong_ace"):
        during = [enf.decide(list_flights()) for _ in range(3)]
    if tolerant:
        assert all(d.allowed and d.status is None for d in during)  # admitted, not counted
        assert "rate-limit store unavailable, admitting" in caplog.text
    else:
        assert {(d.status, d.message) for d in during} == {(500, "An unexpected error occurred")}
        assert "rate-limit store unavailable, denying" in caplog.text

    redis_db.start()  # empty again (no persistence): counting resumes from zero
    assert [enf.decide(list_flights()).status for _ in range(4)] == [None, None, None, 429]
