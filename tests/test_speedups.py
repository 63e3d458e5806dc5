"""The C scanner returns exactly what the rewriter's regexes and `bytes.find` would, and the C
encoding of a kept response's inputs tells apart what the pure-Python one does.

The scanner's references live in fuzz/checks.py, shared with the atheris target;
tests/test_rewriter.py runs every rewriter test with and without the scanner, and
tests/test_replay.py every replay test with either encoding.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_personalize import replay, rewriter
from edge_personalize.rewriter import _BORING, MARKER
from fuzz.checks import SKIP_STOPS, check_speedups, ifind_reference, skip_reference

try:
    from edge_personalize import _speedups
except ImportError:
    _speedups = None  # type: ignore[assignment]

needs_speedups = pytest.mark.skipif(_speedups is None, reason="edge_personalize._speedups is not built")


def _compiler() -> str | None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(compiler) or shutil.which("cc")


@pytest.mark.skipif(_compiler() is None, reason="no C compiler here, so the pure-Python scanner is expected")
def test_the_extension_is_built_where_a_compiler_is() -> None:
    importlib.import_module("edge_personalize._speedups")
    if os.environ.get("EDGE_PERSONALIZE_PURE_PYTHON", "") in ("", "0"):
        assert rewriter._NATIVE is not None


def test_the_pure_python_scanner_can_be_forced() -> None:
    code = "from edge_personalize import rewriter; print(rewriter._NATIVE is None)"
    env = {**os.environ, "EDGE_PERSONALIZE_PURE_PYTHON": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


SOUP = st.sampled_from(
    [
        *("<", ">", "/", "!", "?", "-", "=", '"', "'", " ", "\t", "\n", "\f", "\r", "\x0b", "\x00", "\xff", "\x80"),
        *("a", "x", "div", "DiV", "body", "a1", "data-personalize", "DATA-Personalize", "data-personalize-x"),
        *("script", "sCrIpT", "style", "textarea", "TITLE", "xmp", "iframe", "noembed", "noframes", "noscript"),
        *("plaintext", "scriptx", "<!--", "-->", "--!>", "</", "<!", "<?", "</body", "<div ", "</div>", "x" * 40),
    ]
)
soups = st.lists(SOUP, max_size=40).map(lambda parts: "".join(parts).encode("latin-1"))


@st.composite
def scans(draw: st.DrawFn) -> tuple[bytes, int, int]:
    buf = draw(soups)
    return buf, draw(st.integers(-3, len(buf) + 3)), draw(st.integers(-3, len(buf) + 3))


@needs_speedups
@settings(max_examples=2000, deadline=None)
@given(scans())
def test_skip_ends_where_the_boring_regex_ends(scan: tuple[bytes, int, int]) -> None:
    buf, pos, end = scan
    run = _BORING.match(buf, pos, end)
    expected = run.end() if run is not None else min(max(pos, 0), len(buf))  # re finds nothing when end < pos
    assert _speedups.skip(buf, pos, end) == expected


@needs_speedups
@settings(max_examples=2000, deadline=None)
@given(scans(), st.sampled_from(SKIP_STOPS))
def test_skip_stops_before_the_tags_asked_for(scan: tuple[bytes, int, int], stops: tuple[bytes | None, ...]) -> None:
    buf, pos, end = scan
    stop_tag, stop_attr = stops
    assert _speedups.skip(buf, pos, end, stop_tag, stop_attr) == skip_reference(buf, pos, end, stop_tag, stop_attr)


@needs_speedups
@settings(max_examples=1000, deadline=None)
@given(soups, st.integers(-5, 200), st.sampled_from([(MARKER, None), (MARKER, b"</body"), (b"</body", None)]))
def test_ifind_finds_what_lowered_find_finds(buf: bytes, pos: int, needles: tuple[bytes, bytes | None]) -> None:
    assert _speedups.ifind(buf, pos, *needles) == ifind_reference(buf, pos, *needles)


@needs_speedups
@pytest.mark.parametrize(
    ("buf", "stops", "expected"),
    [
        (b'<a title="x>y">z<p>', (None, None), 19),
        (b"<a b='c>d' e=f>g", (None, None), 16),
        (b'<a b="unterminated>x', (None, None), 0),  # the value may end in the next chunk
        (b'<a title=x"y>z', (None, None), 14),  # a quote inside an unquoted value is text
        (b"<a b c>x", (None, None), 8),
        (b"<a =b>x", (None, None), 0),
        (b"<!-->x<!--->y<!-- a --!>z", (None, None), 25),
        (b"<!-- open", (None, None), 0),
        (b"x<Script>y", (None, None), 1),
        (b"x<scriptx>y", (None, None), 11),
        (b"x<1<\x00<=y", (None, None), 8),
        (b"x</ a>", (None, None), 1),
        (b"x<!doctype html>", (None, None), 1),
        (b"x<", (None, None), 1),  # what follows `<` is not known yet
        (b"<p><DIV><div>", (b"div", None), 3),
        (b"<p></Div>", (b"div", None), 3),
        (b"<p><div Data-Personalize=a>", (None, MARKER), 3),
        (b"<p></div data-personalize=a>", (None, MARKER), 28),  # not a start tag
        (b'<p title="data-personalize=a">', (None, MARKER), 30),  # a value, not an attribute
    ],
)
def test_skip_examples(buf: bytes, stops: tuple[bytes | None, bytes | None], expected: int) -> None:
    assert _speedups.skip(buf, 0, len(buf), *stops) == expected
    assert skip_reference(buf, 0, len(buf), *stops) == expected


@needs_speedups
def test_skip_looks_no_further_than_end() -> None:
    buf = b'<a title="x">y<!-- z -->'
    assert [_speedups.skip(buf, 0, end) for end in (12, 13, 14, 23, 24)] == [0, 13, 14, 14, 24]


@needs_speedups
def test_long_runs_and_values_are_found_past_the_first_bytes() -> None:
    value = b"v" * 5000
    buf = b"t" * 5000 + b'<a b="' + value + b'" c=' + value + b">" + b"<!--" + value + b"-->"
    check_speedups(buf, 0, len(buf), 0)
    assert _speedups.skip(buf, 0, len(buf)) == len(buf)
    assert _speedups.ifind(buf + b"DATA-personalize", 3, MARKER) == len(buf)


@needs_speedups
@pytest.mark.parametrize("needles", [(MARKER, None), (MARKER, b"</body"), (b"</body", None)])
def test_ifind_finds_a_needle_at_every_offset_of_a_long_page(needles: tuple[bytes, bytes | None]) -> None:
    # Near misses share a needle's first and last byte, so every block has lanes to look at.
    filler = b'<p class="d-e">data-personalisE</boby dx</b>' * 8
    for at in range(len(filler) - 40):
        for needle in (needles[0].upper(), needles[-1] or needles[0]):
            buf = filler[:at] + needle + filler[at:]
            for pos in (0, at, at + 1):
                assert _speedups.ifind(buf, pos, *needles) == ifind_reference(buf, pos, *needles)


@needs_speedups
def test_arguments_are_checked() -> None:
    with pytest.raises(TypeError):
        _speedups.skip("text", 0, 4)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _speedups.skip(b"x", 0, 1, "div")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        _speedups.ifind(b"x", 0, b"")


# key_inputs: the C encoding of the request values a kept response is made from must tell apart
# exactly what the pure-Python one (replay.python_key_inputs) tells apart.
WANTED = frozenset({b"accept-language", b"cookie", b"x-personalize-trace"})
TRACE = b"x-personalize-trace"
names = st.sampled_from([b"accept-language", b"cookie", b"host", b"user-agent", b"x-personalize-trace", b""])
values = st.sampled_from([b"", b"de", b"d", b"e", b"ede", b"\x00", b"\xff" * 3, b"v" * 300])
texts = st.sampled_from(["", "/", "/a", "/\u00e9", "/\u20ac", "/\U0001f600", "/\udc80", "127.0.0.1", "::1"])
key_cases = st.tuples(
    st.lists(st.tuples(names, values), max_size=4).flatmap(lambda headers: st.sampled_from([headers, tuple(headers)])),
    texts,
    st.sampled_from([b"", b"a=1", b"a=1&b"]),
    texts,
)


def _both(case: tuple[Any, ...]) -> tuple[bytes | None, bytes | None]:
    args = (WANTED, TRACE, *case)
    return _speedups.key_inputs(*args), replay.python_key_inputs(*args)


@needs_speedups
@settings(max_examples=3000, deadline=None)
@given(key_cases, key_cases)
def test_key_inputs_tell_apart_what_the_python_encoding_tells_apart(
    one: tuple[Any, ...], other: tuple[Any, ...]
) -> None:
    native_one, python_one = _both(one)
    native_other, python_other = _both(other)
    assert (native_one is None) == (python_one is None)
    assert (native_one == native_other) == (python_one == python_other)
    if native_one is not None and native_other is not None:
        # Equal exactly when the request values a response is made from are equal.
        picked_one = [header for header in one[0] if header[0] in WANTED]
        picked_other = [header for header in other[0] if header[0] in WANTED]
        same = picked_one == picked_other and one[1:] == other[1:]
        assert (native_one == native_other) == same


@needs_speedups
def test_key_inputs_pick_the_wanted_headers_in_order_and_refuse_the_trace() -> None:
    def key(request: list[tuple[bytes, bytes]]) -> bytes | None:
        return _speedups.key_inputs(WANTED, TRACE, request, "/", b"", "")

    base = key([(b"accept-language", b"de"), (b"cookie", b"a=b")])
    assert base is not None
    assert key([(b"host", b"x"), (b"accept-language", b"de"), (b"user-agent", b"y"), (b"cookie", b"a=b")]) == base
    assert key([(b"cookie", b"a=b"), (b"accept-language", b"de")]) != base
    assert key([(b"accept-language", b"de"), (b"x-personalize-trace", b"1")]) is None
    assert _speedups.key_inputs(WANTED, TRACE, ((b"accept-language", b"de"), (b"cookie", b"a=b")), "/", b"", "") == base


class _Bytes(bytes):
    pass


@needs_speedups
@pytest.mark.parametrize(
    "case",
    [
        ([[b"accept-language", b"de"]], "/", b"", ""),  # a header as a list
        ([(b"accept-language", "de")], "/", b"", ""),  # a str value
        ([(_Bytes(b"cookie"), b"a=b")], "/", b"", ""),  # a subclass, whose methods could run
        ([(b"cookie", b"a=b", b"c")], "/", b"", ""),
        ([], b"/", b"", ""),
        ([], "/", "", ""),
        ([], "/", b"", None),
        (iter([]), "/", b"", ""),
    ],
)
def test_key_inputs_leave_to_be_made_afresh_what_no_server_should_give(case: tuple[Any, ...]) -> None:
    assert _speedups.key_inputs(WANTED, TRACE, *case) is None


@needs_speedups
def test_key_inputs_grow_past_their_first_buffer() -> None:
    request = [(b"cookie", bytes([i % 256]) * 1000) for i in range(40)]
    one = _speedups.key_inputs(WANTED, TRACE, request, "/", b"", "")
    other = _speedups.key_inputs(WANTED, TRACE, [*request[:-1], (b"cookie", b"\x01" * 1000)], "/", b"", "")
    assert one is not None and other is not None and one != other and len(one) > 40_000


@needs_speedups
def test_key_inputs_arguments_are_checked() -> None:
    with pytest.raises(TypeError):
        _speedups.key_inputs(set(WANTED), TRACE, [], "/", b"", "")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _speedups.key_inputs(WANTED, TRACE, [], "/", b"")  # type: ignore[call-arg]
