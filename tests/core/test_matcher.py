"""Matching rules of SPEC §3, through Enforcer.match."""

from __future__ import annotations

from typing import Any

import pytest

from kong_ace import ConfigError, Enforcer


def api(ops: list[tuple[str, str]], name: str = "api", **extra: Any) -> dict[str, Any]:
    return {"name": name, "operations": [{"method": m, "path": p} for m, p in ops], **extra}


def enforcer(*apis: dict[str, Any]) -> Enforcer:
    return Enforcer({"apis": list(apis)})


def matched(e: Enforcer, method: str, path: str, **kw: Any) -> str | None:
    op = e.match(method, path, **kw)
    return None if op is None else f"{op.method} {op.path}"


def test_literal_beats_template_regardless_of_order() -> None:
    for ops in ([("GET", "/users/{id}"), ("GET", "/users/me")],
                [("GET", "/users/me"), ("GET", "/users/{id}")]):
        e = enforcer(api(ops))
        assert matched(e, "GET", "/users/me") == "GET /users/me"
        assert matched(e, "GET", "/users/42") == "GET /users/{id}"


def test_literal_at_earlier_position_wins() -> None:
    e = enforcer(api([("GET", "/{kind}/list"), ("GET", "/users/{id}")]))
    assert matched(e, "GET", "/users/list") == "GET /users/{id}"
    assert matched(e, "GET", "/teams/list") == "GET /{kind}/list"


def test_backtracks_when_the_literal_branch_dead_ends() -> None:
    e = enforcer(api([("GET", "/users/me/settings"), ("GET", "/users/{id}/posts")]))
    assert matched(e, "GET", "/users/me/posts") == "GET /users/{id}/posts"


def test_parameter_needs_one_non_empty_segment() -> None:
    e = enforcer(api([("GET", "/users/{id}")]))
    assert matched(e, "GET", "/users/a%2Fb") == "GET /users/{id}"  # %2F is not a separator
    assert matched(e, "GET", "/users/a/b") is None
    assert matched(e, "GET", "/users") is None
    assert matched(e, "GET", "/users//") is None


def test_partial_segment_templates() -> None:
    e = enforcer(api([
        ("GET", "/files/{name}.json"),
        ("GET", "/files/{name}"),
        ("GET", "/v1/{a}-{b}"),
        ("GET", "/reports/report-{id}"),
        ("GET", "/reports/{name}"),
    ]))
    assert matched(e, "GET", "/files/a.b.json") == "GET /files/{name}.json"
    assert matched(e, "GET", "/files/a.yaml") == "GET /files/{name}"
    assert matched(e, "GET", "/files/.json") == "GET /files/{name}"  # {name} cannot be empty
    assert matched(e, "GET", "/v1/x-y") == "GET /v1/{a}-{b}"
    assert matched(e, "GET", "/v1/xy") is None
    assert matched(e, "GET", "/reports/report-7") == "GET /reports/report-{id}"
    assert matched(e, "GET", "/reports/summary") == "GET /reports/{name}"


def test_partial_segments_with_disjoint_suffixes_coexist() -> None:
    e = enforcer(api([("GET", "/a/{x}.json"), ("GET", "/a/{x}.yaml")]))
    assert matched(e, "GET", "/a/b.yaml") == "GET /a/{x}.yaml"
    assert matched(e, "GET", "/a/b.json") == "GET /a/{x}.json"


def test_trailing_slash_is_the_same_operation() -> None:
    e = enforcer(api([("GET", "/pets"), ("GET", "/pets/{id}/")]))
    assert matched(e, "GET", "/pets/") == "GET /pets"
    assert matched(e, "GET", "/pets/1") == "GET /pets/{id}/"
    assert matched(e, "GET", "/pets/1/") == "GET /pets/{id}/"


def test_path_is_normalised_like_kong() -> None:
    e = enforcer(api([("GET", "/admin/users"), ("GET", "/public/{page}")]))
    assert matched(e, "GET", "/public/../admin/users") == "GET /admin/users"
    assert matched(e, "GET", "/public/%2e%2e/admin/users") == "GET /admin/users"
    assert matched(e, "GET", "//admin//users") == "GET /admin/users"
    assert matched(e, "GET", "/%61dmin/users") == "GET /admin/users"
    # An encoded slash keeps the value inside one segment.
    assert matched(e, "GET", "/public/..%2Fadmin") == "GET /public/{page}"


def test_method_is_exact_and_head_falls_back_to_get() -> None:
    e = enforcer(api([("GET", "/a"), ("GET", "/b"), ("HEAD", "/b"), ("POST", "/c")]))
    assert matched(e, "get", "/a") is None
    assert matched(e, "HEAD", "/a") == "GET /a"
    assert matched(e, "HEAD", "/b") == "HEAD /b"
    assert matched(e, "HEAD", "/c") is None


def test_base_path_from_servers_and_override() -> None:
    spec = """
openapi: 3.0.0
info: {title: t, version: '1'}
servers: [{url: 'https://x.example/{v}/', variables: {v: {default: v9}}}]
paths:
  /things: {get: {responses: {'200': {description: ok}}}}
"""
    e = Enforcer({"apis": [{"name": "a", "spec": spec}, {"name": "b", "spec": spec,
                                                        "base_path": "/other"}]})
    assert matched(e, "GET", "/v9/things") == "GET /v9/things"
    assert matched(e, "GET", "/other/things") == "GET /other/things"
    assert matched(e, "GET", "/things") is None


def test_service_and_host_scoping() -> None:
    e = enforcer(
        api([("GET", "/x")], name="scoped", service="svc-a"),
        api([("GET", "/x")], name="hosted", hosts=["*.example.com"]),
        api([("GET", "/x")], name="any"),
    )
    assert e.match("GET", "/x", service={"id": "1", "name": "svc-a"}).api == "scoped"
    assert e.match("GET", "/x", service="svc-b", host="api.example.com:8443").api == "hosted"
    assert e.match("GET", "/x", service="svc-b", host="example.org").api == "any"


def test_operation_ids() -> None:
    spec = """
openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /a: {get: {operationId: getA}, post: {}}
"""
    e = Enforcer({"apis": [{"name": "a", "spec": spec}]})
    assert e.match("GET", "/a").id == "getA"
    assert e.match("POST", "/a").id == "POST /a"


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([("GET", "/a/{x}"), ("GET", "/a/{y}")],
         "apis[0].operations[1]: 'GET /a/{y}' is already operation 'GET /a/{x}' of API 'api'"),
        ([("GET", "/a/{x}.{y}"), ("GET", "/a/{x}-{y}")],
         "apis[0].operations[1]: segment '{}-{}' is as specific as '{}.{}' and may match the "
         "same text: the templates are ambiguous"),
        ([("GET", "/a/{}")], "apis[0].operations[0].path: malformed path template: "
                             "empty parameter name '{}'"),
        ([("GET", "/a/{x")], "apis[0].operations[0].path: malformed path template: "
                             "unbalanced braces in '{x'"),
        ([("GET", "/a/{x}{y}")], "apis[0].operations[0].path: malformed path template: "
                                 "adjacent parameters in '{x}{y}' cannot be told apart"),
        ([("GET", "/a//b")], "apis[0].operations[0].path: malformed path template: "
                             "empty segment ('//')"),
        ([("GET", "a/b")], "apis[0].operations[0].path: malformed path template: "
                           "a path template must start with '/'"),
    ],
)
def test_ambiguous_and_malformed_templates_are_config_errors(ops, message) -> None:
    with pytest.raises(ConfigError) as err:
        enforcer(api(ops))
    assert str(err.value) == message


def test_two_unscoped_apis_with_the_same_operation_are_ambiguous() -> None:
    with pytest.raises(ConfigError, match="is already operation 'GET /x' of API 'one'"):
        enforcer(api([("GET", "/x")], name="one"), api([("GET", "/x")], name="two"))


def test_cost_does_not_scan_operations() -> None:
    # 20,000 static and templated operations: a lookup visits one branch per segment.
    ops = [("GET", f"/r{i}/items/{{id}}") for i in range(10_000)]
    ops += [("GET", f"/r{i}/items/{{id}}/tags/{{tag}}") for i in range(10_000)]
    e = enforcer(api(ops))
    assert matched(e, "GET", "/r9999/items/5/tags/x") == "GET /r9999/items/{id}/tags/{tag}"
    node = e.catalog.matcher._root
    assert len(node.static) == 10_000 and node.param is None and not node.patterns
