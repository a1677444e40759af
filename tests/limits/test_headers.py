"""rate_limiting.headers: Kong's headers, the IETF draft-11 structured fields, or both."""

from __future__ import annotations

import pytest

from kong_ace import Enforcer
from kong_ace.limits.limiter import Limit, build_limiter
from kong_ace.limits.storage import MemoryStorage

from .conftest import T0, Clock
from .test_enforcer_limits import config_with, list_flights

PER_SECOND_AND_MINUTE = (Limit(2, 1), Limit(3, 60))
POLICY = '"minute";q=3;w=60, "second";q=2;w=1'


def limiter(clock: Clock, headers: str | None, window_type: str = "fixed"):  # noqa: ANN201
    settings = {"window_type": window_type, "headers": headers}
    return build_limiter(settings, clock=clock, storage=MemoryStorage())


def test_ietf_fields_exactly() -> None:
    clock = Clock(T0 + 20.5)
    lim = limiter(clock, "ietf")
    first = lim.consume("a", PER_SECOND_AND_MINUTE)
    assert first.headers == {
        # draft-ietf-httpapi-ratelimit-headers-11 §3 and §4: Lists of String Items with
        # parameters; t is the seconds left in the window (the minute started 20.5 s ago).
        "RateLimit-Policy": POLICY,
        "RateLimit": '"minute";r=2;t=40, "second";r=1;t=1',
    }
    lim.consume("a", PER_SECOND_AND_MINUTE)
    denied = lim.consume("a", PER_SECOND_AND_MINUTE)
    assert not denied.allowed
    assert denied.headers == {
        "RateLimit-Policy": POLICY,
        "RateLimit": '"minute";r=1;t=40, "second";r=0;t=1',
        "Retry-After": "1",
    }


def test_kong_stays_the_default_and_both_sends_both() -> None:
    clock = Clock(T0 + 20.5)
    kong = limiter(clock, None).consume("a", PER_SECOND_AND_MINUTE).headers
    assert kong == {
        "X-RateLimit-Limit-Second": "2", "X-RateLimit-Remaining-Second": "1",
        "X-RateLimit-Limit-Minute": "3", "X-RateLimit-Remaining-Minute": "2",
        "RateLimit-Limit": "2", "RateLimit-Remaining": "1", "RateLimit-Reset": "1",
    }
    both = limiter(clock, "both").consume("a", PER_SECOND_AND_MINUTE).headers
    assert both == {**kong, "RateLimit-Policy": POLICY,
                    "RateLimit": '"minute";r=2;t=40, "second";r=1;t=1'}


def test_a_refusing_sliding_window_says_when_it_admits_again() -> None:
    clock = Clock(T0 + 30)
    lim = limiter(clock, "ietf", "sliding")
    limits = (Limit(4, 60), Limit(1000, 86400))
    assert sum(lim.consume("a", limits).allowed for _ in range(6)) == 4
    clock.now = T0 + 75  # a quarter into the next minute: 4 * 0.75 = 3 still count
    got = lim.consume("a", limits)  # 3 + 1 <= 4: admitted
    assert got.allowed
    denied = lim.consume("a", limits)  # 1 + 3 + 1 > 4
    retry = denied.headers["Retry-After"]
    # The refusing window's t is its Retry-After (not the 45 s to its end), §6.
    assert denied.headers["RateLimit"] == f'"day";r=995;t={86400 - 75}, "minute";r=0;t={retry}'
    assert int(retry) < 45
    assert denied.headers["RateLimit-Policy"] == '"day";q=1000;w=86400, "minute";q=4;w=60'


@pytest.mark.parametrize("style", ["kong", "ietf", "both"])
def test_through_the_enforcer_on_admits_and_on_429(style: str) -> None:
    enf = Enforcer(config_with(1, headers=style), clock=Clock(T0 + 1), storage=MemoryStorage())
    admitted, refused = enf.decide(list_flights()), enf.decide(list_flights())
    assert admitted.allowed and refused.status == 429
    for d in (admitted, refused):
        assert ("RateLimit" in d.headers) == (style != "kong")
        assert ("X-RateLimit-Limit-Minute" in d.headers) == (style != "ietf")
    retry = refused.headers["Retry-After"]
    if style != "kong":
        assert refused.headers["RateLimit"] == f'"minute";r=0;t={retry}'
    hidden = config_with(1, headers=style, hide_client_headers=True)
    assert Enforcer(hidden, clock=Clock(T0 + 1), storage=MemoryStorage()).decide(
        list_flights()).headers == {}


@pytest.mark.parametrize("window_type", ["fixed", "sliding"])
@pytest.mark.parametrize("limits", [(Limit(5, 1),), (Limit(3, 60),), (Limit(7, 3600),),
                                    (Limit(0, 60),), (Limit(2, 1), Limit(2, 1))])
def test_the_one_window_shortcut_answers_as_the_loop_does(window_type: str,
                                                          limits: tuple[Limit, ...]) -> None:
    # Limiter.consume answers an admitted one-window hit in one dict display; the general loop
    # (the shortcut turned off) must say the same, header order included, as time goes by.
    clock = Clock(T0 + 0.25)
    quick, loop = limiter(clock, None, window_type), limiter(clock, None, window_type)
    loop._one_window = False
    for step in range(200):
        clock.now += (0.05, 0.4, 7.3, 61.0)[step % 4]
        a, b = quick.consume("k", limits), loop.consume("k", limits)
        assert (a, list(a.headers)) == (b, list(b.headers))
    assert quick._plans[limits].single and not loop._plans[limits].single
