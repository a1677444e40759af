"""MemoryStorage specifics: bounded memory and the process-wide home of derived stores."""

from __future__ import annotations

from kong_ace.limits.limiter import Limit, build_limiter
from kong_ace.limits.storage import MemoryStorage

from .conftest import T0, Clock


def test_idle_counters_are_dropped_once_they_no_longer_count() -> None:
    clock, root = Clock(T0 + 1), MemoryStorage()
    limiter = build_limiter({"window_type": "sliding"}, clock=clock, storage=root)
    for i in range(100):
        limiter.consume(f"app{i}|pkg:a", (Limit(5, 60), Limit(100, 3600)))
    assert len(root) == 200
    clock.now = T0 + 2 * 60 + 61  # the minute counters are two windows old, the hours are not
    limiter.consume("app0|pkg:a", (Limit(5, 60), Limit(100, 3600)))
    assert len(root) == 101  # app0's two records, and the other apps' hour records
    clock.now = T0 + 2 * 3600 + 61
    limiter.consume("app0|pkg:a", (Limit(5, 60), Limit(100, 3600)))
    assert len(root) == 2


def test_shared_objects_are_created_once_and_closed_with_the_root() -> None:
    root = MemoryStorage()
    closed: list[str] = []

    class Derived:
        def close(self) -> None:
            closed.append("x")

    first = root.shared("k", Derived)
    assert root.shared("k", Derived) is first
    root.close()
    assert closed == ["x"]
    assert root.shared("k", Derived) is not first
