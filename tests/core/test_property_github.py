"""Property: every operation of GitHub's REST description (1,200 operations) matches back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kong_ace import Enforcer
from kong_ace.core.matcher import Operation

PARAM = re.compile(r"\{[^{}]+\}")
# A leading '~' keeps a value from ever equalling a literal segment, which would win (SPEC §3).
VALUE = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~", min_size=1,
    max_size=12,
).map(lambda s: "~" + s)


@pytest.fixture(scope="module")
def github(github_spec: Path) -> Enforcer:
    return Enforcer({"apis": [{"name": "github", "spec_file": str(github_spec)}]})


def test_catalog_is_large(github: Enforcer) -> None:
    assert len(github.catalog.operations()) > 1000


def test_every_operation_matches_back(github: Enforcer) -> None:
    for op in github.catalog.operations():
        path = PARAM.sub("~v1", op.path)
        assert github.match(op.method, path) == op, path


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_fillings_match_back(github: Enforcer, data: st.DataObject) -> None:
    op: Operation = data.draw(st.sampled_from(github.catalog.operations()))
    path = PARAM.sub(lambda _: data.draw(VALUE), op.path)
    if data.draw(st.booleans()):
        path += "/"  # a trailing slash is the same operation
    assert github.match(op.method, path) == op


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_dot_segments_never_reach_another_operation(github: Enforcer, data: st.DataObject) -> None:
    # A prefix that '..' removes again must land on exactly the operation of the clean path.
    op: Operation = data.draw(st.sampled_from(github.catalog.operations()))
    clean = PARAM.sub("~v", op.path)
    detour = data.draw(st.sampled_from(["/x/..", "/x/%2e%2e", "/./", "//"]))
    assert github.match(op.method, detour + clean) == op
