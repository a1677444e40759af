"""kong-ace check: operation-to-route coverage, findings and exit codes, run as a subprocess."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kong_ace import ConfigError, Enforcer
from tests.conftest import ROOT, SPECS, example_config
from tests.ops.helpers import KONG_YML, ace_plugin, as_json, kong_ace, route, write_deck

# An SGR sequence that sets a foreground colour (not bold or italic).
COLOUR = re.compile(r"\x1b\[(?:\d+;)*(?:3[0-7]|38;[25];[\d;]+|9[0-7])m")


def check(path: Path, *extra: str) -> tuple[int, dict]:
    proc = kong_ace("check", str(path), "--json", *extra)
    return proc.returncode, as_json(proc)


def statuses(report: dict) -> dict[str, str]:
    return {op["id"]: op["status"] for op in report["operations"]}


def test_example_kong_yml_carries_every_operation_and_lists_packages():
    code, report = check(KONG_YML, "--specs-dir", "specs", "--strict")
    assert code == 0
    enforcer = Enforcer(example_config())
    ops = enforcer.catalog.operations()
    assert [op["id"] for op in report["operations"]] == [op.id for op in ops]
    assert report["unmatched"] == []
    for entry, op in zip(report["operations"], ops, strict=True):
        assert entry["status"] == "matched"
        assert entry["path"] == op.path and entry["method"] == op.method
        # The example's APIs are unscoped (a scope costs a PDK round trip); its services are
        # named after the APIs whose base paths their routes carry.
        scope = enforcer.catalog.apis[op.api].scope.service or op.api
        assert entry["routes"] and {r["service"] for r in entry["routes"]} == {scope}
        want = [n for n, p in enforcer.catalog.packages.items() if op.uid in p.op_uids]
        assert entry["packages"] == want
    mobile = {r["name"] for e in report["operations"] for r in e["routes"] if r["hosts"]}
    assert mobile == {"flights-mobile", "bookings-mobile"}


def test_example_findings_and_spec_warnings():
    _, report = check(KONG_YML, "--specs-dir", "specs")
    assert report["applications_without_approved_registration"] == ["partner-portal"]
    assert report["spec_warnings"] == Enforcer(example_config()).warnings
    text = kong_ace("check", str(KONG_YML), "--specs-dir", "specs").stdout
    for warning in report["spec_warnings"]:
        assert warning in text
    assert "application 'partner-portal' has no approved registration" in text


def test_operations_no_route_carries_are_unmatched_and_fail_strict(tmp_path):
    def move_flights(data):
        route(data, "flights")["paths"] = ["/flights/v2"]
        route(data, "flights-mobile")["paths"] = ["/flights/v2"]

    path = write_deck(tmp_path, move_flights)
    code, report = check(path)
    assert code == 0
    flights = [op for op in report["operations"] if op["api"] == "flights"]
    assert flights and all(op["status"] == "unmatched" for op in flights)
    assert all("no route path matches /flights/v1/" in op["reason"] for op in flights)
    assert set(report["unmatched"]) == {op["id"] for op in flights}
    assert all(op["status"] == "matched" for op in report["operations"] if op["api"] != "flights")
    assert check(path, "--strict")[0] == 1
    text = kong_ace("check", str(path), "--strict")
    assert text.returncode == 1
    assert f"{len(flights)} unmatched operation(s)" in text.stdout
    assert text.stdout.count("unmatched") >= len(flights)


def scope_apis(data):
    """Scope each example API to its service (the example leaves them unscoped)."""
    for api in ace_plugin(data)["config"]["apis"]:
        api["service"] = api["name"]


def test_a_route_of_another_service_does_not_carry_a_scoped_api(tmp_path):
    def steal(data):
        scope_apis(data)
        flights = next(s for s in data["services"] if s["name"] == "flights")
        flights["routes"].append({"name": "greedy", "paths": ["/bookings/v2/bookings"]})

    _, report = check(write_deck(tmp_path, steal))
    by_id = {op["id"]: op for op in report["operations"]}
    # The longer prefix takes plain requests; the host route (more fields set) still wins
    # for its host.
    assert [r["name"] for r in by_id["listBookings"]["routes"]] == ["bookings-mobile"]
    assert [r["name"] for r in by_id["getCustomer"]["routes"]] == ["bookings", "bookings-mobile"]

    def steal_all(data):
        steal(data)
        bookings = next(s for s in data["services"] if s["name"] == "bookings")
        bookings["routes"] = [r for r in bookings["routes"] if r["name"] == "bookings"]

    _, report = check(write_deck(tmp_path, steal_all))
    by_id = {op["id"]: op for op in report["operations"]}
    assert by_id["listBookings"]["status"] == "unmatched"
    assert "route 'greedy' of service 'flights'" in by_id["listBookings"]["reason"]
    assert "scoped to service 'bookings'" in by_id["listBookings"]["reason"]
    assert by_id["getCustomer"]["status"] == "matched"


def test_route_methods_limit_what_it_carries(tmp_path):
    def get_only(data):
        route(data, "flights")["methods"] = ["GET"]
        route(data, "flights-mobile")["methods"] = ["GET"]

    _, report = check(write_deck(tmp_path, get_only))
    flights = [op for op in report["operations"] if op["api"] == "flights"]
    for op in flights:
        assert op["status"] == ("matched" if op["method"] == "GET" else "unmatched")
        if op["method"] != "GET":
            assert "match the path but allow only GET" in op["reason"]
            assert "'flights'" in op["reason"] and "'flights-mobile'" in op["reason"]


def test_regex_route_paths_are_anchored_and_may_carry_only_some_values(tmp_path):
    def regex(data):
        for name in ("flights", "flights-mobile"):
            route(data, name)["paths"] = [r"~/flights/v1/flights/\d+$"]

    _, report = check(write_deck(tmp_path, regex))
    got = statuses(report)
    # /flights/v1/flights/1 reaches the route, /flights/v1/flights/ace-sample does not.
    assert got["getFlight"] == got["cancelFlight"] == "partial"
    assert got["listFlights"] == got["listSeats"] == "unmatched"
    assert any("getFlight" in f and "partly" in f for f in report["findings"])


def test_prefix_paths_are_string_prefixes_like_kong(tmp_path):
    def short_prefix(data):
        for name in ("flights", "flights-mobile"):
            route(data, name)["paths"] = ["/flig"]

    assert set(statuses(check(write_deck(tmp_path, short_prefix))[1]).values()) == {"matched"}


def test_strip_path_does_not_change_coverage(tmp_path):
    def strip(data):
        for s in data["services"]:
            for r in s["routes"]:
                r["strip_path"] = True

    stripped = statuses(check(write_deck(tmp_path, strip))[1])
    assert stripped == statuses(check(KONG_YML, "--specs-dir", "specs")[1])
    assert set(stripped.values()) == {"matched"}


@pytest.mark.parametrize(("route_hosts", "carried"), [
    (["*.example.com"], True), (["api.*"], True), (["api.example.com"], True),
    (["other.org"], False)])
def test_host_scoped_api_needs_a_route_accepting_its_host(tmp_path, route_hosts, carried):
    def hosts(data):
        ace_plugin(data)["config"]["apis"][0]["hosts"] = ["api.example.com"]
        route(data, "flights")["hosts"] = route_hosts
        route(data, "flights-mobile")["hosts"] = route_hosts

    _, report = check(write_deck(tmp_path, hosts))
    flights = [op for op in report["operations"] if op["api"] == "flights"]
    assert {op["status"] for op in flights} == {"matched" if carried else "unmatched"}


def test_top_level_routes_referencing_services_count(tmp_path):
    def hoist(data):
        data["routes"] = []
        for s in data["services"]:
            for r in s.pop("routes"):
                data["routes"].append({**r, "service": {"name": s["name"]}})

    _, report = check(write_deck(tmp_path, hoist))
    assert set(statuses(report).values()) == {"matched"}


def test_equal_priority_routes_are_reported_as_ambiguous(tmp_path):
    def twin(data):
        flights = next(s for s in data["services"] if s["name"] == "flights")
        flights["routes"].append({"name": "twin", "paths": ["/flights/v1"]})

    _, report = check(write_deck(tmp_path, twin))
    assert any("'flights', 'twin'" in f and "same priority" in f for f in report["findings"])


def test_empty_packages_are_reported(tmp_path):
    def empty(data):
        ace_plugin(data)["config"]["packages"].append({"name": "nothing", "operations": []})

    _, report = check(write_deck(tmp_path, empty))
    assert report["empty_packages"] == ["nothing"]
    assert "package 'nothing' has no operations" in report["findings"]


def test_duplicate_key_hashes_name_every_place_and_exit_2(tmp_path):
    def dup(data):
        apps = ace_plugin(data)["config"]["applications"]
        apps[2]["credentials"] = [dict(apps[0]["credentials"][0])]

    path = write_deck(tmp_path, dup)
    proc = kong_ace("check", str(path))
    assert proc.returncode == 2
    assert "applications[0].credentials[0], applications[2].credentials[0]" in proc.stderr
    code, report = check(path)
    assert code == 2
    assert report["duplicate_keys"][0]["places"] == [
        "applications[0].credentials[0]", "applications[2].credentials[0]"]


def test_config_errors_print_the_core_message_and_exit_2(tmp_path):
    def bad(data):
        ace_plugin(data)["config"]["packages"][0]["operations"][1]["path"] = "/flight/{id}"

    path = write_deck(tmp_path, bad)
    config = example_config()
    config["packages"][0]["operations"][1]["path"] = "/flight/{id}"
    with pytest.raises(ConfigError) as raised:
        Enforcer(config)
    proc = kong_ace("check", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {raised.value}"
    assert proc.stdout == ""
    code, report = check(path)
    assert code == 2 and report["error"] == str(raised.value)


def test_unreadable_specs_dir_hints_at_specs_dir_flag():
    proc = kong_ace("check", str(KONG_YML))
    assert proc.returncode == 2
    assert "cannot read spec" in proc.stderr and "--specs-dir" in proc.stderr
    assert kong_ace("check", "kong.yml", "--specs-dir", str(SPECS)).returncode == 0


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: route(d, "flights").update(paths=["flights"]),
     "services[0].routes[0].paths[0]: path 'flights' must start with '/' or '~'"),
    (lambda d: d["plugins"].clear(), "no 'ace' plugin in this file"),
    (lambda d: d.update(_format_version="9.9"), "_format_version: '9.9' is not a format version"),
    (lambda d: d.update(routes=[{"paths": ["/x"], "service": {"name": "nope"}}]),
     "routes[0].service: service 'nope' is not defined"),
    (lambda d: d["services"][0]["plugins"].append(d["plugins"].pop(0)) if "plugins" in
     d["services"][0] else d["services"][0].update(plugins=[d["plugins"].pop(0)]),
     "the ace plugin must be global"),
])
def test_broken_decks_exit_2_naming_the_place(tmp_path, edit, message):
    proc = kong_ace("check", str(write_deck(tmp_path, edit)))
    assert proc.returncode == 2
    assert message in proc.stderr


def test_deck_env_variables_are_substituted(tmp_path):
    path = write_deck(tmp_path)
    path.write_text(path.read_text().replace("match_policy: required",
                                             'match_policy: ${{ env "DECK_POLICY" }}'))
    assert kong_ace("check", str(path), env={"DECK_POLICY": "if_present"}).returncode == 0
    os.environ.pop("DECK_POLICY", None)
    proc = kong_ace("check", str(path))
    assert proc.returncode == 2 and "DECK_POLICY" in proc.stderr


def test_colour_only_on_a_terminal_without_no_color(tmp_path):
    assert "\x1b[" not in kong_ace("check", str(KONG_YML), "--specs-dir", "specs").stdout

    def on_tty(env: dict[str, str]) -> str:
        main, sub = pty.openpty()
        full = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
        proc = subprocess.run([sys.executable, "-m", "kong_ace.ops.cli", "check", "kong.yml",
                               "--specs-dir", "specs"], stdout=sub, stderr=sub, cwd=ROOT,
                              env={**full, "TERM": "xterm-256color", **env}, timeout=60)
        os.close(sub)
        chunks = []
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(main)
        assert proc.returncode == 0
        return b"".join(chunks).decode()

    assert COLOUR.search(on_tty({}))
    assert not COLOUR.search(on_tty({"NO_COLOR": "1"}))


def test_regex_paths_beat_prefixes_and_regex_priority_orders_them(tmp_path):
    def regex_steal(data, flights_priority=None):
        scope_apis(data)
        bookings = next(s for s in data["services"] if s["name"] == "bookings")
        bookings["routes"].append({"name": "regex-steal", "paths": ["~/flights/v1/flights$"]})
        if flights_priority is not None:
            route(data, "flights")["paths"] = ["~/flights/v1/"]
            route(data, "flights")["regex_priority"] = flights_priority

    _, report = check(write_deck(tmp_path, regex_steal))
    by_id = {op["id"]: op for op in report["operations"]}
    # Kong tries regex paths before prefixes: plain-host requests go to the bookings service.
    assert [r["name"] for r in by_id["listFlights"]["routes"]] == ["flights-mobile"]
    assert [r["name"] for r in by_id["getFlight"]["routes"]] == ["flights", "flights-mobile"]

    _, report = check(write_deck(tmp_path, lambda d: regex_steal(d, flights_priority=10)))
    by_id = {op["id"]: op for op in report["operations"]}
    assert [r["name"] for r in by_id["listFlights"]["routes"]] == ["flights", "flights-mobile"]


def test_missing_format_version_and_disabled_plugin_are_warnings(tmp_path):
    def loose(data):
        del data["_format_version"]
        ace_plugin(data)["enabled"] = False

    proc = kong_ace("check", str(write_deck(tmp_path, loose)))
    assert proc.returncode == 0
    assert "_format_version is missing" in proc.stdout
    assert "plugins[0]: the ace plugin has enabled: false" in proc.stdout


@pytest.mark.parametrize(("policy", "effect"), [("required", "ACE answers 404"),
                                                ("if_present", "pass through without ACE")])
def test_route_paths_that_carry_no_operation_are_reported(tmp_path, policy, effect):
    def extra_path(data):
        route(data, "flights")["paths"].append("/legacy")
        ace_plugin(data)["config"]["match_policy"] = policy

    _, report = check(write_deck(tmp_path, extra_path))
    assert {"route": "flights", "path": "/legacy"} in report["idle_route_paths"]
    assert {"route": "flights", "path": "/flights/v1"} not in report["idle_route_paths"]
    assert any("path /legacy carries no API operation" in f and effect in f
               for f in report["findings"])


def test_missing_file_and_non_yaml_exit_2(tmp_path):
    proc = kong_ace("check", str(tmp_path / "absent.yml"))
    assert proc.returncode == 2 and "cannot read" in proc.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("services: [\n")
    proc = kong_ace("check", str(bad), "--json")
    assert proc.returncode == 2 and "not valid YAML" in as_json(proc)["error"]


def test_applications_on_deprecated_apis_are_listed(tmp_path):
    def deprecate(data):
        apis = ace_plugin(data)["config"]["apis"]
        apis[1].update(deprecated="2026-01-01", sunset="2026-06-01T00:00:00Z")  # bookings
        apis[0].update(sunset="2999-01-01")  # flights: ahead

    code, report = check(write_deck(tmp_path, deprecate))
    assert code == 0
    got = {(e["application"], e["registration"], e["api"], e["state"])
           for e in report["deprecated_registrations"]}
    assert got == {
        ("web-app", "package flights-basic", "flights", "sunset ahead"),
        ("partner-portal", "package travel-premium", "flights", "sunset ahead"),
        ("partner-portal", "package travel-premium", "bookings", "sunset passed"),
        ("mobile-app", "package travel-premium", "flights", "sunset ahead"),
        ("mobile-app", "package travel-premium", "bookings", "sunset passed"),
    }
    bookings = next(e for e in report["deprecated_registrations"] if e["api"] == "bookings")
    assert (bookings["deprecated"], bookings["sunset"]) == ("2026-01-01T00:00:00Z",
                                                            "2026-06-01T00:00:00Z")
    text = kong_ace("check", str(write_deck(tmp_path, deprecate))).stdout.replace("\n  ", " ")
    assert ("application 'mobile-app' is registered (approved) to package travel-premium, which "
            "reaches API 'bookings' (sunset passed 2026-06-01T00:00:00Z)") in text


def test_monitored_operations_are_listed(tmp_path):
    def monitor(data):
        ace_plugin(data)["config"]["apis"][1]["enforcement"] = "monitor"

    _, report = check(write_deck(tmp_path, monitor))
    bookings = [op["id"] for op in report["operations"] if op["api"] == "bookings"]
    assert report["monitored_operations"] == bookings
    assert any(f.startswith(f"monitor mode: {len(bookings)} of ") for f in report["findings"])
