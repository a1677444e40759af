"""A declared first call and a last call spare round trips into the handler, never a check."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from kong_ace.gateway.events import ERROR_EXIT, EVENT_TYPES, last_call
from kong_ace.gateway.rpc import PluginServer

GET = {"Method": "kong.nginx.get_ctx", "Args": ["in"]}


def server(mode: str, access: Any) -> tuple[PluginServer, int, list[str]]:
    """A server whose plugin declares get_ctx("in") first and runs ``access(kong, seen)``."""
    seen: list[str] = []

    class Plugin:
        first_calls = {"access": ("kong.nginx.get_ctx", ("in",))}

        def __init__(self, config: Any) -> None:
            if config.get("plain"):
                self.first_calls: dict[str, Any] = {}  # as a failing ace instance does

        def access(self, kong: Any) -> None:
            seen.append("started")
            access(kong, seen)
            seen.append("ended")

    module = SimpleNamespace(Plugin=Plugin, Schema=[], version="0", priority=1)
    srv = PluginServer("ace", module, EVENT_TYPES[mode])
    iid = srv.start_instance({"Name": "ace", "Config": json.dumps({})})["Id"]
    return srv, iid, seen


def handle(srv: PluginServer, iid: int) -> dict[str, Any]:
    return srv.handle_event({"InstanceId": iid, "EventName": "access"})


def step(srv: PluginServer, eid: int, data: Any = None, err: Any = None) -> Any:
    return srv.step({"EventId": eid, "Data": data}, err)["Data"]


MODES = pytest.mark.parametrize("mode", ["gevent", "threading"])


@MODES
def test_the_declared_first_call_is_answered_before_the_handler_runs(mode: str) -> None:
    def access(kong: Any, seen: list[str]) -> None:
        seen.append(kong.nginx.get_ctx("in"))
        seen.append(kong.nginx.get_var("x"))

    srv, iid, seen = server(mode, access)
    first = handle(srv, iid)
    eid = first["EventId"]
    assert first["Data"] == GET and seen == []  # answered, the handler not started
    assert step(srv, eid, "ctx")["Method"] == "kong.nginx.get_var"
    assert seen == ["started", "ctx"]  # get_ctx("in") returned Kong's answer, no round trip
    assert step(srv, eid, "var") == "ret"
    assert seen == ["started", "ctx", "var", "ended"] and not srv.events


@MODES
def test_a_handler_starting_with_another_call_makes_it_and_drops_the_read(mode: str) -> None:
    def access(kong: Any, seen: list[str]) -> None:
        seen.append(kong.nginx.get_var("x"))  # not the declared call
        seen.append(kong.nginx.get_ctx("in"))  # now a real round trip: the early answer is gone
        seen.append(kong.nginx.get_ctx("other"))

    srv, iid, seen = server(mode, access)
    eid = handle(srv, iid)["EventId"]
    assert step(srv, eid, "early")["Method"] == "kong.nginx.get_var"
    assert step(srv, eid, "var") == GET
    assert step(srv, eid, "late")["Args"] == ["other"]
    assert step(srv, eid, "other") == "ret"
    assert seen == ["started", "var", "late", "other", "ended"]


@MODES
def test_an_error_answer_to_the_declared_call_reaches_the_handler(mode: str) -> None:
    def access(kong: Any, seen: list[str]) -> None:
        kong.nginx.get_ctx("in")
        seen.append("not reached")

    srv, iid, seen = server(mode, access)
    eid = handle(srv, iid)["EventId"]
    assert step(srv, eid, None, "no ctx") == ERROR_EXIT  # the handler failed: a 500
    assert seen == ["started"] and not srv.events


@MODES
def test_the_last_call_ends_the_handler_before_kong_answers_it(mode: str) -> None:
    def access(kong: Any, seen: list[str]) -> None:
        ctx = kong.nginx.get_ctx("in")
        assert last_call(kong.nginx.set_ctx, "out", ctx + "!") is None
        seen.append("after the last call")

    srv, iid, seen = server(mode, access)
    eid = handle(srv, iid)["EventId"]
    out = step(srv, eid, "v")
    assert out == {"Method": "kong.nginx.set_ctx", "Args": ["out", "v!"]}
    assert seen == ["started", "after the last call", "ended"]  # all ran before the answer
    assert eid in srv.events  # Kong steps once more with set_ctx's result
    assert step(srv, eid) == "ret" and not srv.events


@MODES
def test_an_error_answer_to_the_last_call_is_a_500(mode: str) -> None:
    def access(kong: Any, seen: list[str]) -> None:
        last_call(kong.nginx.set_ctx, "out", kong.nginx.get_ctx("in"))

    srv, iid, _ = server(mode, access)
    eid = handle(srv, iid)["EventId"]
    assert step(srv, eid, "v")["Method"] == "kong.nginx.set_ctx"
    assert step(srv, eid, None, "set_ctx failed") == ERROR_EXIT and not srv.events


@MODES
@pytest.mark.parametrize("after", ["call", "exit", "last_call"])
def test_any_pdk_call_after_the_last_call_fails_closed(mode: str, after: str) -> None:
    def access(kong: Any, seen: list[str]) -> None:
        last_call(kong.nginx.set_ctx, "out", kong.nginx.get_ctx("in"))
        try:
            if after == "call":
                kong.nginx.get_var("x")
            elif after == "exit":
                kong.response.exit(200, {"message": "fine"})
            else:
                last_call(kong.nginx.set_ctx, "again", 1)
        except Exception:
            kong.response.exit(200)  # a plugin's catch-all: still no pass
        seen.append("not reached")

    srv, iid, seen = server(mode, access)
    eid = handle(srv, iid)["EventId"]
    assert step(srv, eid, "v") == ERROR_EXIT  # the set_ctx is never sent: a 500
    assert "not reached" not in seen and not srv.events


@MODES
def test_a_last_call_after_an_exit_keeps_the_exit(mode: str) -> None:
    def access(kong: Any, seen: list[str]) -> None:
        kong.nginx.get_ctx("in")
        kong.response.exit(403, {"message": "no"})
        last_call(kong.nginx.set_ctx, "out", 1)

    srv, iid, _ = server(mode, access)
    eid = handle(srv, iid)["EventId"]
    out = step(srv, eid, "v")
    assert out["Method"] == "kong.response.exit" and out["Args"][0] == 403
    assert not srv.events  # Kong never steps back after exit


def test_last_call_outside_this_server_is_the_plain_call() -> None:
    calls = []
    assert last_call(lambda *a: calls.append(a) or "r", 1, 2) == "r"
    assert calls == [(1, 2)]


@MODES
def test_an_instance_declaring_no_first_call_runs_its_handler_at_once(mode: str) -> None:
    # ace's failing instances (a rejected config) answer 500 with one PDK call, not two.
    def access(kong: Any, seen: list[str]) -> None:
        kong.response.exit(500, {"message": "An unexpected error occurred"})

    srv, _, seen = server(mode, access)
    iid = srv.start_instance({"Name": "ace", "Config": json.dumps({"plain": True})})["Id"]
    out = handle(srv, iid)
    assert out["Data"]["Method"] == "kong.response.exit" and seen == ["started", "ended"]
    assert not srv.events
