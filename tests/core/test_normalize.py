"""Path normalisation must equal Kong's (kong/tools/uri.lua normalize with merge_slashes)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kong_ace.core.normalize import normalize_path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("", ""),
        ("/pets", "/pets"),
        ("/pets/", "/pets/"),
        ("//pets///1", "/pets/1"),
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/a/b/..", "/a/"),
        ("/../../etc", "/etc"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E./b", "/b"),
        ("/a/.%2e/b", "/b"),
        ("/%70ets", "/pets"),  # unreserved octets are decoded
        ("/a%2fb", "/a%2Fb"),  # an encoded slash stays encoded (upper-cased): never a separator
        ("/a%2Fb/../c", "/c"),
        ("/a%3bb", "/a%3Bb"),
        ("/%7euser", "/~user"),
        ("/caf%C3%A9", "/café"),
        ("/a%252e%252e/b", "/a%252e%252e/b"),  # double encoding is not decoded twice
        ("/a/..;/b", "/a/..;/b"),  # '..;' is a plain segment, as in Kong
    ],
)
def test_normalizes_as_kong(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@given(st.text(alphabet="/.%2eEfF;ab", max_size=30).map(lambda s: "/" + s))
def test_idempotent(path: str) -> None:
    once = normalize_path(path)
    assert normalize_path(once) == once


@given(st.text(alphabet="/.%2eEfF;ab", max_size=30).map(lambda s: "/" + s))
def test_no_dot_segment_or_double_slash_survives(path: str) -> None:
    out = normalize_path(path)
    assert "//" not in out
    assert "/../" not in out + "/" and "/./" not in out + "/"


_PIECES = ["%", "%2", "%2F", "%2f", "%25", "%3a", "%3A", "%41", "%6a", "%C3%A9", "%ff", "\\",
           "\\x41", "a", "/", "\u00e9", "%zz", "%%", "%5c", "%00", "%2a", "%7e", "%5D", "%252F"]


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(_PIECES), max_size=40).map(lambda p: "/" + "".join(p)))
def test_many_escapes_decode_in_c_exactly_as_one_by_one(path: str) -> None:
    # Paths with many escapes take the codecs.escape_decode route (see normalize._decode_in_c).
    from kong_ace.core import normalize as n
    assert n._decode_in_c(path, n._KEEP_KONG) == n._substitute(path, n._KONG)
    assert n._decode_in_c(path, ()) == n._substitute(path, n._PLAIN)
    assert n._decode_in_c(path, n._KEEP_SLASH) == n._substitute(path, n._PLAIN_BUT_SLASH)
