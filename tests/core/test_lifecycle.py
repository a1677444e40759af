"""API version lifecycle: RFC 9745 Deprecation, RFC 8594 Sunset, Link, and 410 after sunset."""

from __future__ import annotations

import datetime as dt
import re
from email.utils import parsedate_to_datetime

import pytest

from kong_ace import Enforcer, Request
from kong_ace.errors import ConfigError
from tests.conftest import WEB_KEY

FLIGHTS = "/flights/v1/flights"
DEPRECATED = dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc)
SUNSET = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
# RFC 9651 §3.3.7 sf-date: "@" then an sf-integer (up to 15 digits, optional minus sign).
SF_DATE = re.compile(r"@-?[0-9]{1,15}")
# RFC 9110 §5.6.7 IMF-fixdate.
IMF_FIXDATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul"
                         r"|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT")


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now.timestamp()

    def __call__(self) -> float:
        return self.now


def lifecycle(config, **fields) -> dict:
    config["apis"][0].update(fields)  # flights
    return config


def test_deprecated_api_answers_carry_rfc_headers(config) -> None:
    lifecycle(config, deprecated="2026-07-01", sunset="2027-01-01T00:00:00Z",
              deprecation_link="https://dev.example.com/flights-v2")
    enf = Enforcer(config, clock=Clock(DEPRECATED))
    for d in (enf.decide(Request("GET", FLIGHTS, {"apikey": WEB_KEY})),
              enf.decide(Request("GET", FLIGHTS))):  # a denial too
        h = d.headers
        assert SF_DATE.fullmatch(h["Deprecation"]) and h["Deprecation"] == \
            f"@{int(DEPRECATED.timestamp())}"
        assert IMF_FIXDATE.fullmatch(h["Sunset"])
        assert parsedate_to_datetime(h["Sunset"]) == SUNSET
        assert h["Link"] == '<https://dev.example.com/flights-v2>; rel="deprecation"'
    assert d.status == 401 and d.headers["WWW-Authenticate"] == 'Key realm="kong"'


def test_other_apis_get_no_headers(config) -> None:
    lifecycle(config, deprecated=True)
    d = Enforcer(config).decide(Request("GET", "/bookings/v2/bookings"))
    assert "Deprecation" not in d.headers


def test_deprecated_true_is_the_earliest_sf_date(config) -> None:
    lifecycle(config, deprecated=True)
    d = Enforcer(config).decide(Request("GET", FLIGHTS, {"apikey": WEB_KEY}))
    assert d.headers["Deprecation"] == "@0" and "Sunset" not in d.headers
    assert "Link" not in d.headers
    assert d.headers["RateLimit-Limit"] == "5"  # the quota headers stay


def test_after_sunset_warn_keeps_serving(config) -> None:
    lifecycle(config, sunset="2027-01-01")
    clock = Clock(SUNSET + dt.timedelta(days=1))
    d = Enforcer(config, clock=clock).decide(Request("GET", FLIGHTS, {"apikey": WEB_KEY}))
    assert d.allowed and "Sunset" in d.headers and "Deprecation" not in d.headers


def test_after_sunset_refuse_is_410_by_the_injected_clock(config) -> None:
    lifecycle(config, deprecated="2026-07-01", sunset="2027-01-01", sunset_action="refuse")
    clock = Clock(SUNSET - dt.timedelta(seconds=1))
    enf = Enforcer(config, clock=clock)
    assert enf.decide(Request("GET", FLIGHTS, {"apikey": WEB_KEY})).allowed
    clock.now = SUNSET.timestamp()
    d = enf.decide(Request("GET", FLIGHTS, {"apikey": WEB_KEY}))
    assert (d.allowed, d.status, d.body) == (False, 410,
                                             {"message": "this API version has been retired"})
    assert parsedate_to_datetime(d.headers["Sunset"]) == SUNSET
    assert d.operation_id == "listFlights"
    # Gone for everyone, before authentication.
    assert enf.decide(Request("GET", FLIGHTS)).status == 410


def test_sunset_in_monitor_mode_is_a_would_deny(config) -> None:
    lifecycle(config, sunset="2027-01-01", sunset_action="refuse", enforcement="monitor")
    d = Enforcer(config, clock=Clock(SUNSET)).decide(Request("GET", FLIGHTS, {"apikey": WEB_KEY}))
    assert d.allowed and d.would_deny.status == 410 and "Sunset" in d.headers


@pytest.mark.parametrize(("fields", "error"), [
    ({"deprecated": "soon"}, r"apis\[0\]\.deprecated: 'soon' is not an ISO 8601 time"),
    ({"sunset": "2027-01-01", "deprecated": "2027-06-01"},
     r"apis\[0\]\.sunset: is earlier than the deprecated date"),
    ({"deprecation_link": "https://x"}, r"apis\[0\]\.deprecation_link: needs deprecated"),
    ({"deprecated": True, "deprecation_link": "https://x>; rel=evil"},
     r"apis\[0\]\.deprecation_link: must be a URI"),
    ({"sunset_action": "refuse"}, r"apis\[0\]\.sunset_action: needs a sunset date"),
    ({"sunset": "2027-01-01", "sunset_action": "block"}, r"apis\[0\]\.sunset_action: 'block'"),
])
def test_bad_lifecycle_fields_name_their_place(config, fields, error) -> None:
    with pytest.raises(ConfigError, match=error):
        Enforcer(lifecycle(config, **fields))


def test_yaml_dates_and_string_booleans(config) -> None:
    lifecycle(config, deprecated="true", sunset=dt.date(2027, 1, 1))
    d = Enforcer(config).decide(Request("GET", FLIGHTS))
    assert d.headers["Deprecation"] == "@0"
    assert parsedate_to_datetime(d.headers["Sunset"]) == SUNSET
    config["apis"][0]["deprecated"] = "false"
    config["apis"][0].pop("sunset")
    assert "Deprecation" not in Enforcer(config).decide(Request("GET", FLIGHTS)).headers
