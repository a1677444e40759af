"""kong-ace explain: the steps and the final answer for one request, with keys redacted."""

from __future__ import annotations

import pytest

from kong_ace import Enforcer, Request
from kong_ace.core import decision as messages
from tests.conftest import PARTNER_KEY, WEB_KEY, example_config
from tests.ops.helpers import KONG_YML, ace_plugin, as_json, kong_ace, write_deck

MOBILE_KEY = "mobile-demo-key"  # key-auth credential of consumer "mobile" in kong.yml


def explain(*args: str, path=KONG_YML) -> tuple[int, dict, str]:
    """Run explain in JSON and in text; return the code, the JSON and the text output."""
    base = ["explain", str(path), *args]
    if path == KONG_YML:
        base += ["--specs-dir", "specs"]
    proc = kong_ace(*base, "--json")
    text = kong_ace(*base)
    assert text.returncode == proc.returncode
    return proc.returncode, as_json(proc), text.stdout + text.stderr


def steps(report: dict) -> dict[str, dict]:
    return {s["step"]: s for s in report["steps"]}


def core_decision(method: str, path: str, **kw) -> object:
    return Enforcer(example_config()).decide(Request(method, path, **kw))


def test_allowed_request_shows_every_step_and_the_core_decision():
    code, report, text = explain("GET", "/flights/v1/flights/AF12/seats",
                                 "-H", f"apikey: {WEB_KEY}")
    assert code == 0 and report["allowed"] and report["answered_by"] == "upstream"
    got = steps(report)
    assert list(got) == ["route", "authentication", "operation", "application", "registration",
                         "limits", "decision"]
    assert got["route"]["route"] == "flights" and got["route"]["service"] == "flights"
    assert got["operation"]["operation_id"] == "listSeats"
    assert got["application"]["application"] == "web-app"
    assert got["registration"]["target"] == "flights-basic"
    # listSeats has its own limit in the package, counted separately.
    assert got["limits"]["bucket"] == "web-app|pkg:flights-basic|op:listSeats"
    want = core_decision("GET", "/flights/v1/flights/AF12/seats", headers={"apikey": WEB_KEY},
                         service={"name": "flights"})
    assert got["decision"]["upstream_headers"] == dict(want.upstream_headers)
    assert "X-ACE-Application-ID: web-app" in text


@pytest.mark.parametrize("where", [["-H", f"apikey: {WEB_KEY}"], ["--query", f"apikey={WEB_KEY}"],
                                   ["-H", "apikey: not-a-key"]])
def test_keys_never_appear_in_the_output(where):
    _, report, text = explain("GET", "/flights/v1/flights", *where)
    key = where[1].split(" ", 1)[-1].split("=", 1)[-1]
    assert key not in text
    assert key not in str(report)
    assert "<redacted>" in text


def test_not_registered_is_403_with_the_core_message():
    code, report, text = explain("POST", "/flights/v1/flights", "-H", f"apikey: {WEB_KEY}")
    assert code == 1
    assert (report["status"], report["message"]) == (403, messages.NOT_REGISTERED)
    assert steps(report)["registration"]["ok"] is False
    assert f'403 {{"message": "{messages.NOT_REGISTERED}"}}' in text


def test_pending_registration_names_its_status():
    code, report, _ = explain("GET", "/bookings/v2/bookings", "-H", f"apikey: {PARTNER_KEY}")
    assert code == 1
    assert report["message"] == messages.REGISTRATION_MESSAGES["pending"]
    assert steps(report)["registration"]["status"] == "pending"


def test_unknown_key_is_401():
    code, report, _ = explain("GET", "/flights/v1/flights", "-H", "apikey: guess")
    assert code == 1 and (report["status"], report["message"]) == (401, messages.UNAUTHORIZED)
    assert "belongs to no application" in steps(report)["application"]["outcome"]


def test_key_auth_consumer_maps_to_an_application():
    code, report, text = explain("GET", "/bookings/v2/bookings/B1", "--host",
                                 "mobile.example.com", "-H", f"x-mobile-key: {MOBILE_KEY}")
    assert code == 0
    got = steps(report)
    assert got["route"]["route"] == "bookings-mobile"
    assert "consumer 'mobile'" in got["authentication"]["outcome"]
    assert "application 'mobile-app'" in got["application"]["outcome"]
    assert MOBILE_KEY not in text


def test_key_auth_without_a_key_answers_before_ace():
    code, report, _ = explain("GET", "/flights/v1/flights", "--host", "mobile.example.com")
    assert code == 1
    assert (report["status"], report["answered_by"]) == (401, "key-auth")
    assert "operation" not in steps(report)


def test_consumer_flag_is_another_plugins_authentication():
    code, report, _ = explain("GET", "/bookings/v2/bookings", "--consumer", "mobile")
    assert code == 0 and report["steps"][-1]["application_id"] == "mobile-app"


def test_no_route_is_kongs_404():
    code, report, text = explain("GET", "/nowhere")
    assert code == 1
    assert (report["status"], report["answered_by"]) == (404, "kong")
    assert "no Route matched with those values" in text


def test_no_operation_follows_match_policy(tmp_path):
    code, report, _ = explain("GET", "/flights/v1/unknown", "-H", f"apikey: {WEB_KEY}")
    assert code == 1 and (report["status"], report["message"]) == (404, messages.NO_OPERATION)

    def lenient(data):
        ace_plugin(data)["config"]["match_policy"] = "if_present"

    code, report, _ = explain("GET", "/flights/v1/unknown", path=write_deck(tmp_path, lenient))
    assert code == 0 and report["allowed"]
    assert "if_present" in steps(report)["operation"]["outcome"]


def test_path_is_normalised_as_kong_does():
    code, report, _ = explain("GET", "/flights/v1/x/../flights", "-H", f"apikey: {WEB_KEY}")
    assert code == 0
    assert report["request"]["normalized_path"] == "/flights/v1/flights"
    assert steps(report)["operation"]["operation_id"] == "listFlights"


def test_malformed_header_and_config_errors_exit_2(tmp_path):
    proc = kong_ace("explain", str(KONG_YML), "GET", "/", "-H", "no-colon", "--specs-dir", "specs")
    assert proc.returncode == 2 and "must look like 'Name: value'" in proc.stderr

    def bad(data):
        ace_plugin(data)["config"]["applications"][0]["registrations"][0]["package"] = "gone"

    proc = kong_ace("explain", str(write_deck(tmp_path, bad)), "GET", "/")
    assert proc.returncode == 2
    assert "applications[0].registrations[0]: unknown package 'gone'" in proc.stderr


def test_two_different_keys_are_refused_and_both_redacted():
    code, report, text = explain("GET", "/flights/v1/flights", "-H", f"apikey: {WEB_KEY}",
                                 "--query", f"apikey={PARTNER_KEY}")
    assert code == 1 and report["message"] == messages.DUPLICATE_KEY
    assert WEB_KEY not in text and PARTNER_KEY not in text
    assert report["request"]["query"] == {"apikey": ["<redacted>"]}


# Request confusion, second round (issue 20): the new 400s and why -----------------------------

def _confusing(data):
    config = ace_plugin(data)["config"]
    config["match_policy"] = "if_present"
    config["apis"].append({"name": "files", "base_path": "/files", "operations": [
        {"method": "GET", "path": "/users/{id}", "operation_id": "getUser"},
        {"method": "GET", "path": "/users/export", "operation_id": "exportUsers"},
        {"method": "POST", "path": "/items/{id}", "operation_id": "postItem"},
        {"method": "DELETE", "path": "/items/{id}", "operation_id": "deleteItem"}]})
    data["services"][0]["routes"].append({"name": "files", "paths": ["/files"]})


def test_a_case_folded_reading_is_explained(tmp_path):
    code, report, text = explain("GET", "/files/users/Export", "-H", f"apikey: {WEB_KEY}",
                                 path=write_deck(tmp_path, _confusing))
    assert code == 1 and (report["status"], report["message"]) == (400, "ambiguous request path")
    reason = steps(report)["confusion"]["outcome"]
    assert "case-insensitive router" in reason and "'exportUsers'" in reason
    assert "'getUser'" in reason and "path_case" in text


def test_a_body_override_and_an_uninspected_body_are_explained(tmp_path):
    deck = write_deck(tmp_path, _confusing)
    code, report, _ = explain("POST", "/files/items/7", "-H", f"apikey: {WEB_KEY}", "-H",
                              "Content-Type: application/x-www-form-urlencoded", "-d",
                              "a=1&.method=delete", path=deck)
    assert (code, report["status"], report["message"]) == (1, 400,
                                                            "method override in request body")
    assert "names delete" in steps(report)["confusion"]["outcome"]
    code, report, _ = explain("POST", "/files/items/7", "-H", f"apikey: {WEB_KEY}", "-H",
                              "Content-Type: multipart/form-data; boundary=x",
                              "--body-too-large", path=deck)
    assert report["message"] == "request body cannot be inspected for a method override"
    assert "DELETE also reach" in steps(report)["confusion"]["outcome"]


def test_a_decoded_reading_is_explained(tmp_path):
    code, report, _ = explain("GET", "/files/users/%%36%35xport", "-H", f"apikey: {WEB_KEY}",
                              path=write_deck(tmp_path, _confusing))
    assert report["status"] == 400
    assert "percent-decoding upstream reads /files/users/export" in steps(report)[
        "confusion"]["outcome"]


def test_monitor_mode_says_what_enforce_would_answer(tmp_path):
    def monitor(data):
        ace_plugin(data)["config"]["enforcement"] = "monitor"

    code, report, text = explain("GET", "/bookings/v2/bookings", "-H", f"apikey: {PARTNER_KEY}",
                                 path=write_deck(tmp_path, monitor))
    assert code == 0 and report["allowed"]
    decision = steps(report)["decision"]
    assert decision["would_deny"]["status"] == 403 and decision["ok"] is None
    assert "monitor mode: forwarded" in text
    assert 'enforce would answer 403 "registration pending approval"' in text
