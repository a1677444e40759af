"""One limiter suite over every store: memory, Redis (sync_rate 0), Redis-synced (sync_rate > 0)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kong_ace.limits.limiter import Limit
from kong_ace.limits.storage import MemoryStorage

from .conftest import T0, Clock, Node

PER_SECOND_AND_MINUTE = (Limit(2, 1), Limit(3, 60))


def test_fixed_window_admits_exactly_the_limit_then_restarts_at_the_boundary(
    make_node: Callable[..., Node], clock: Clock
) -> None:
    node = make_node()
    limits = (Limit(5, 60),)
    clock.now = T0 + 10
    assert node.admitted("app|pkg:a", limits, 8) == 5
    clock.now = T0 + 59.999  # same clock-aligned minute
    assert not node.consume("app|pkg:a", limits).allowed
    clock.now = T0 + 60  # next minute: a fresh count, whatever came just before
    assert node.admitted("app|pkg:a", limits, 8) == 5


def test_denied_requests_are_not_charged_and_all_limits_charge_together(
    make_node: Callable[..., Node], clock: Clock
) -> None:
    node = make_node()
    key = "app|pkg:a"
    assert node.admitted(key, PER_SECOND_AND_MINUTE, 10) == 2  # the second limit binds
    clock.advance(1)
    # Had the 8 refusals counted against the minute, nothing would pass now.
    got = node.consume(key, PER_SECOND_AND_MINUTE)
    assert got.allowed and got.headers["X-RateLimit-Remaining-Minute"] == "0"
    assert not node.consume(key, PER_SECOND_AND_MINUTE).allowed  # minute is spent
    clock.advance(1)
    assert not node.consume(key, PER_SECOND_AND_MINUTE).allowed
    clock.now = T0 + 60
    assert node.admitted(key, PER_SECOND_AND_MINUTE, 3) == 2


def test_a_refusal_by_one_limit_charges_no_other_limit(
    make_node: Callable[..., Node], clock: Clock
) -> None:
    node = make_node()
    key = "app|pkg:a"
    limits = (Limit(1, 1), Limit(10, 60))
    for _ in range(5):
        assert node.admitted(key, limits, 4) == 1  # 3 refusals per second, by the second limit
        clock.advance(1)
    got = node.consume(key, limits)
    assert got.headers["X-RateLimit-Remaining-Minute"] == "4"  # 6 charged, not 21


def test_headers_match_kongs_rate_limiting(make_node: Callable[..., Node], clock: Clock) -> None:
    node = make_node()
    key = "app|pkg:a"
    clock.now = T0 + 20.5
    first = node.consume(key, PER_SECOND_AND_MINUTE)
    assert first.allowed and first.retry_after is None
    assert first.headers == {
        "X-RateLimit-Limit-Second": "2", "X-RateLimit-Remaining-Second": "1",
        "X-RateLimit-Limit-Minute": "3", "X-RateLimit-Remaining-Minute": "2",
        # Most restrictive window: lowest remaining (the second); reset = seconds to its end.
        "RateLimit-Limit": "2", "RateLimit-Remaining": "1", "RateLimit-Reset": "1",
    }
    second = node.consume(key, PER_SECOND_AND_MINUTE)
    assert second.headers["RateLimit-Remaining"] == "0"
    assert second.headers["X-RateLimit-Remaining-Minute"] == "1"
    denied = node.consume(key, PER_SECOND_AND_MINUTE)
    assert not denied.allowed and denied.retry_after == 1
    assert denied.headers["Retry-After"] == "1" and denied.headers["RateLimit-Limit"] == "2"
    clock.advance(1)
    node.consume(key, PER_SECOND_AND_MINUTE)  # minute now spent: 3 of 3
    clock.advance(1)
    denied = node.consume(key, PER_SECOND_AND_MINUTE)
    # Both windows show 0 remaining? Only the minute is out: on a tie Kong reports the larger.
    assert denied.headers["X-RateLimit-Remaining-Minute"] == "0"
    assert denied.headers["X-RateLimit-Remaining-Second"] == "2"  # a refusal is not counted
    assert denied.headers["RateLimit-Limit"] == "3"
    assert denied.retry_after == 60 - 22 and denied.headers["Retry-After"] == "38"
    assert denied.headers["RateLimit-Reset"] == "38"


def test_equal_remaining_reports_the_larger_window(make_node: Callable[..., Node]) -> None:
    got = make_node().consume("k", (Limit(1, 1), Limit(1, 3600)))
    assert got.headers["RateLimit-Limit"] == "1" and got.headers["RateLimit-Remaining"] == "0"
    assert got.headers["RateLimit-Reset"] == "3600"  # the hour, not the second


def test_day_windows_align_to_utc_midnight(make_node: Callable[..., Node], clock: Clock) -> None:
    node = make_node()
    limits = (Limit(2, 86_400),)
    clock.now = T0 + 86_400 - 30  # 23:59:30 UTC
    assert node.admitted("k", limits, 3) == 2
    assert node.consume("k", limits).retry_after == 30
    clock.now = T0 + 86_400  # midnight
    assert node.admitted("k", limits, 3) == 2


def test_sliding_window_weights_the_previous_window(
    make_node: Callable[..., Node], clock: Clock
) -> None:
    node = make_node(window_type="sliding")
    limits = (Limit(10, 60),)
    clock.now = T0 + 50
    assert node.admitted("k", limits, 10) == 10
    clock.now = T0 + 60 + 30  # half the previous minute still counts: 10 * 0.5 = 5 used
    got = [node.consume("k", limits) for _ in range(6)]
    assert [r.allowed for r in got] == [True] * 5 + [False]
    assert [r.headers["RateLimit-Remaining"] for r in got[:5]] == ["4", "3", "2", "1", "0"]
    assert got[0].headers["RateLimit-Reset"] == "30"  # seconds to the end of this minute
    clock.now = T0 + 60 + 45  # the previous minute weighs 10 * 0.25 = 2.5, this one 5: 7.5
    assert node.admitted("k", limits, 5) == 2
    clock.now = T0 + 180  # two windows on: nothing counts
    assert node.admitted("k", limits, 12) == 10


def test_sliding_retry_after_is_when_a_request_passes_again(
    make_node: Callable[..., Node], clock: Clock
) -> None:
    node = make_node(window_type="sliding")
    limits = (Limit(10, 60),)
    clock.now = T0 + 50
    node.admitted("k", limits, 10)
    clock.now = T0 + 60 + 12
    node.admitted("k", limits, 10)  # the previous 10 weigh 8: 2 more pass
    denied = node.consume("k", limits)
    assert not denied.allowed
    # 2 hits in this window: it passes when 10 * (60 - t) / 60 <= 7, at t = 18 (6 s from now).
    assert denied.retry_after == 6 and denied.headers["Retry-After"] == "6"
    clock.advance(denied.retry_after - 0.5)
    assert not node.consume("k", limits).allowed
    clock.advance(0.5)
    assert node.consume("k", limits).allowed


def test_sliding_retry_after_into_the_next_window(
    make_node: Callable[..., Node], clock: Clock
) -> None:
    node = make_node(window_type="sliding")
    limits = (Limit(4, 60),)
    clock.now = T0 + 30
    node.admitted("k", limits, 4)
    denied = node.consume("k", limits)
    # The 4 hits of this minute must decay to 3: at 60 * (1 - 3/4) = 15 s into the next one.
    assert denied.retry_after == 60 - 30 + 15
    clock.now = T0 + 60 + 14.9
    assert not node.consume("k", limits).allowed
    clock.now = T0 + 60 + 15
    assert node.consume("k", limits).allowed


def test_limit_zero_refuses_everything(make_node: Callable[..., Node], clock: Clock) -> None:
    node = make_node()
    clock.now = T0 + 45
    got = node.consume("k", (Limit(0, 60),))
    assert not got.allowed and got.retry_after == 15
    assert got.headers["RateLimit-Remaining"] == "0"


def test_buckets_count_separately(make_node: Callable[..., Node]) -> None:
    node = make_node()
    limits = (Limit(2, 60),)
    assert node.admitted("web|pkg:basic", limits, 3) == 2
    assert node.admitted("web|pkg:basic|op:listSeats", limits, 3) == 2
    assert node.admitted("mobile|pkg:basic", limits, 3) == 2


def test_two_limits_on_one_period_share_one_counter(make_node: Callable[..., Node]) -> None:
    node = make_node()
    limits = (Limit(5, 60), Limit(3, 60))
    assert node.consume("k", limits).headers["X-RateLimit-Limit-Minute"] == "3"
    assert node.admitted("k", limits, 6) == 2  # charged once per request, not once per entry


def test_counts_survive_a_config_reload(
    make_node: Callable[..., Node], clock: Clock
) -> None:
    root = MemoryStorage()
    before = make_node(root=root)
    limits = (Limit(5, 60),)
    assert before.admitted("app|pkg:a", limits, 3) == 3
    # A new config builds a new limiter (new Limit objects, other settings) on the same root.
    after = make_node(root=root, hide_client_headers=True)
    assert after.admitted("app|pkg:a", (Limit(5, 60),), 5) == 2
    root.close()


def test_hide_client_headers_keeps_retry_after(make_node: Callable[..., Node]) -> None:
    node = make_node(hide_client_headers=True)
    assert node.consume("k", (Limit(1, 60),)).headers == {}
    denied = node.consume("k", (Limit(1, 60),))
    assert denied.headers == {} and not denied.allowed and denied.retry_after == 60


def test_no_limits_admits_without_counting(make_node: Callable[..., Node]) -> None:
    got = make_node().consume("k", ())
    assert got.allowed and got.headers == {} and got.retry_after is None


@pytest.mark.parametrize("window_type", ["fixed", "sliding"])
def test_limits_follow_the_injected_clock_only(
    make_node: Callable[..., Node], clock: Clock, window_type: str
) -> None:
    node = make_node(window_type=window_type)
    limits = (Limit(1, 1),)
    clock.now = T0 + 7
    assert node.admitted("k", limits, 2) == 1
    clock.now = T0 + 9  # two seconds later, on the fake clock only: fresh in both window types
    assert node.admitted("k", limits, 2) == 1
