from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_personalize import rewriter as rewriter_module
from edge_personalize.rewriter import MarkupTooCostly, SlotRewriter

try:
    from edge_personalize import _speedups
except ImportError:  # not built; tests/test_speedups.py fails where a compiler should have built it
    _speedups = None  # type: ignore[assignment]


@pytest.fixture(autouse=True, params=["native", "pure"])
def scanner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the C scanner and with the regex fallback: the output must not differ."""
    if request.param == "pure":
        monkeypatch.setattr(rewriter_module, "_NATIVE", None)
    elif _speedups is None:
        pytest.skip("edge_personalize._speedups is not built")
    else:
        monkeypatch.setattr(rewriter_module, "_NATIVE", (_speedups.skip, _speedups.ifind))
    return str(request.param)


def replace_all(name: str, inner: bytes) -> bytes:
    return f"<b>{name}:{len(inner)}</b>".encode()


def keep_all(name: str, inner: bytes) -> None:
    return None


def rewrite(html: bytes, on_slot=replace_all, chunk: int | None = None, **kwargs) -> tuple[bytes, list]:
    calls: list[tuple[str, bytes]] = []

    def callback(name: str, inner: bytes) -> bytes | None:
        calls.append((name, inner))
        return on_slot(name, inner)

    rewriter = SlotRewriter(callback, **kwargs)
    if chunk is None:
        return rewriter.close(html), calls
    out = b"".join(rewriter.feed(html[i : i + chunk]) for i in range(0, len(html), chunk))
    return out + rewriter.close(), calls


@pytest.mark.parametrize(
    "start_tag",
    [
        b'<section data-personalize="hero">',
        b"<section data-personalize='hero'>",
        b"<section data-personalize=hero>",
        b'<SECTION class="a" data-personalize="hero" id=b>',
        b'<Section\n  data-personalize = "hero"\n  class="x">',
        b'<section title="a>b" data-personalize="hero">',
    ],
)
def test_slot_found_whatever_the_quoting_case_and_attribute_order(start_tag: bytes) -> None:
    html = b"<p>before</p>" + start_tag + b"<h1>Hi</h1></section><p>after</p>"
    out, calls = rewrite(html)
    assert calls == [("hero", b"<h1>Hi</h1>")]
    assert out == b"<p>before</p>" + start_tag + b"<b>hero:11</b></section><p>after</p>"


def test_only_inner_html_is_replaced_and_the_rest_is_byte_for_byte() -> None:
    html = b"<!doctype html>\n<html><body>\xc3\xa9<div data-personalize=a>x</div>\r\n</body></html>"
    out, _ = rewrite(html, lambda name, inner: b"NEW")
    assert out == b"<!doctype html>\n<html><body>\xc3\xa9<div data-personalize=a>NEW</div>\r\n</body></html>"


def test_nested_elements_with_the_same_tag_name_stay_inside_the_slot() -> None:
    html = b"<div data-personalize=a><div><div>x</div></div><DIV>y</DIV></div><div>after</div>"
    _, calls = rewrite(html)
    assert calls == [("a", b"<div><div>x</div></div><DIV>y</DIV>")]


@pytest.mark.parametrize(
    "html",
    [
        b'<!-- <div data-personalize="c">x</div> -->',
        b"<script>var s = '<div data-personalize=\"s\">x</div>';</script>",
        b'<style>/* <div data-personalize="s">x</div> */</style>',
        b'<textarea><div data-personalize="t">x</div></textarea>',
        b'<title><div data-personalize="t">x</div></title>',
        b"<div title='<div data-personalize=\"v\">'>x</div>",
        b'<div data-x="data-personalize=v">x</div>',
        b"&lt;div data-personalize=&quot;e&quot;&gt;x&lt;/div&gt;",
        b'<p>data-personalize="text"</p>',
        b'<!DOCTYPE html data-personalize="d"><?xml data-personalize="p"?>',
        b'<div data-personalize-badge="x">y</div>',
    ],
)
def test_marker_text_outside_a_start_tag_attribute_is_not_a_slot(html: bytes) -> None:
    out, calls = rewrite(html)
    assert calls == []
    assert out == html


def test_slots_after_a_comment_or_script_are_still_found() -> None:
    html = b"<!-- a > b --><script>if (a<b) {}</script><div data-personalize=a>x</div>"
    _, calls = rewrite(html)
    assert calls == [("a", b"x")]


@pytest.mark.parametrize(
    "html",
    [
        b'<img data-personalize="hero" src="a.png"><p>x</p>',
        b'<br data-personalize="hero"/>',
        b'<path data-personalize="hero" d="M0 0"/><p>x</p>',
        b'<input data-personalize="hero" value="x">',
    ],
)
def test_void_and_self_closing_elements_have_no_inner_html_to_replace(html: bytes) -> None:
    out, calls = rewrite(html)
    assert calls == []
    assert out == html


def test_unclosed_slot_at_end_of_document_is_emitted_unchanged() -> None:
    html = b'<div data-personalize="a"><p>never closed'
    out, calls = rewrite(html)
    assert calls == []
    assert out == html


def test_slot_larger_than_the_cap_passes_through_unchanged() -> None:
    html = b'<div data-personalize="a">' + b"x" * 5000 + b'</div><div data-personalize="b">small</div>'
    for chunk in (None, 1000, 7):
        out, calls = rewrite(html, chunk=chunk, max_slot_bytes=1000)
        assert calls == [("b", b"small")]
        assert out == html.replace(b">small<", b"><b>b:5</b><")


def test_slot_inside_a_slot_is_content_of_the_outer_one() -> None:
    html = b'<div data-personalize="outer"><p data-personalize="inner">i</p></div>'
    _, calls = rewrite(html)
    assert calls == [("outer", b'<p data-personalize="inner">i</p>')]


def test_slot_name_is_unescaped_and_stripped() -> None:
    _, calls = rewrite(b'<div data-personalize=" a&amp;b ">x</div>')
    assert calls == [("a&b", b"x")]


def test_empty_slot_name_is_not_a_slot() -> None:
    html = b'<div data-personalize="">x</div><div data-personalize>y</div>'
    assert rewrite(html) == (html, [])


def test_utf16_pages_pass_through_untouched() -> None:
    html = '<div data-personalize="a">x</div>'.encode("utf-16")
    out, calls = rewrite(html, chunk=3)
    assert calls == []
    assert out == html


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "cp1252"])
def test_ascii_compatible_charsets_are_rewritten(encoding: str) -> None:
    text = "café \u2013 \u201cquoted\u201d" if encoding != "latin-1" else "café ¡olé!"
    html = f'<p>{text}</p><div data-personalize="a">Grüße</div>'.encode(encoding)
    out, calls = rewrite(html, lambda name, inner: b"new")
    assert calls == [("a", "Grüße".encode(encoding))]
    assert out == f'<p>{text}</p><div data-personalize="a">new</div>'.encode(encoding)


def test_bytes_before_a_slot_are_returned_before_the_slot_is_complete() -> None:
    rewriter = SlotRewriter(replace_all)
    first = rewriter.feed(b'<html><body><p>intro</p><div data-personalize="a"><p>par')
    assert first == b'<html><body><p>intro</p><div data-personalize="a">'
    assert rewriter.feed(b"tial</p>") == b""
    assert rewriter.close(b"</div></body></html>") == b"<b>a:14</b></div></body></html>"


def test_text_is_returned_at_once_but_a_cut_tag_that_may_open_a_slot_is_held() -> None:
    rewriter = SlotRewriter(replace_all)
    assert rewriter.feed(b"<p>hello</p><div data-personalize=a") == b"<p>hello</p>"
    assert rewriter.feed(b">x") == b"<div data-personalize=a>"
    assert rewriter.close(b"</div>") == b"<b>a:1</b></div>"


def test_a_chunk_without_a_marker_is_returned_whole_even_with_a_cut_tag() -> None:
    rewriter = SlotRewriter(replace_all)
    assert rewriter.feed(b"<p>hello</p><di") == b"<p>hello</p><di"
    assert rewriter.feed(b"v data-personalize=a>x") == b"v data-personalize=a>"
    assert rewriter.close(b"</div>") == b"<b>a:1</b></div>"


def test_a_cut_body_end_tag_is_held_for_the_insertion() -> None:
    rewriter = SlotRewriter(replace_all, before_body_end=b"[banner]")
    assert rewriter.feed(b"<p>x</p></BO") == b"<p>x</p>"
    assert rewriter.feed(b"DY></html>") == b"[banner]</BODY></html>"
    assert rewriter.close() == b""


@pytest.mark.parametrize("cut", range(1, 40))
def test_a_tag_begun_in_bytes_already_sent_is_read_again_whole(cut: int) -> None:
    html = b'<p>x</p><div title="a>b" data-personalize="s">inner</div><p>y</p>'
    rewriter = SlotRewriter(replace_all)
    out = rewriter.feed(html[:cut]) + rewriter.feed(html[cut:45]) + rewriter.close(html[45:])
    assert out == b'<p>x</p><div title="a>b" data-personalize="s"><b>s:5</b></div><p>y</p>'


def test_a_tag_cut_inside_a_quoted_value_is_not_ended_early() -> None:
    rewriter = SlotRewriter(replace_all)
    out = rewriter.feed(b'<div title="a>b')
    out += rewriter.feed(b'" data-personalize="s">x</div>')
    assert out + rewriter.close() == b'<div title="a>b" data-personalize="s"><b>s:1</b></div>'


def test_slot_count_is_reported() -> None:
    rewriter = SlotRewriter(keep_all)
    rewriter.close(b"<div data-personalize=a>1</div><div data-personalize=b>2</div>")
    assert rewriter.slots_seen == 2


# Generated documents: each node knows its own HTML and what the rewriter must make of it.

WORDS = st.sampled_from(
    [
        "hello",
        " ",
        "\n",
        "a < b",
        "c > d",
        "&amp;",
        "&lt;div data-personalize=&quot;e&quot;&gt;",
        'data-personalize="t"',
        "é",
        "“",
        "- -",
    ]
)
ATTR_VALUES = st.sampled_from(["x", "a>b", '<div data-personalize="v">', "data-personalize=v", "", "--", "</div>"])
TAGS = st.sampled_from(["div", "section", "p", "span", "DIV", "Aside"])


@dataclass
class Node:
    html: str
    expected: str  # the output when every slot's inner HTML is replaced by replace_all


def _text(words: list[str]) -> Node:
    text = "".join(words)
    return Node(text, text)


@st.composite
def attributes(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 2))):
        value = draw(ATTR_VALUES)
        quote = draw(st.sampled_from(['"', "'"]))
        if quote in value:
            quote = '"' if quote == "'" else "'"
        parts.append(f" {draw(st.sampled_from(['class', 'title', 'data-x']))}={quote}{value}{quote}")
    return "".join(parts)


@st.composite
def nodes(draw: st.DrawFn, depth: int = 0, in_slot: bool = False) -> Node:
    kinds = ["text", "comment", "raw", "void"]
    if depth < 3:
        kinds += ["element", "element", "slot"]
    kind = draw(st.sampled_from(kinds))
    if kind == "text":
        return _text(draw(st.lists(WORDS, max_size=4)))
    if kind == "comment":
        inner = draw(st.sampled_from(["", " x ", ' <div data-personalize="c">x</div> ', " <script> ", " a > b "]))
        html = f"<!--{inner}-->"
        return Node(html, html)
    if kind == "raw":
        tag = draw(st.sampled_from(["script", "style", "textarea", "title", "SCRIPT"]))
        inner = draw(st.sampled_from(["", "x", '<div data-personalize="r">x</div>', "<!-- y", "a < b"]))
        html = f"<{tag}{draw(attributes())}>{inner}</{tag}>"
        return Node(html, html)
    if kind == "void":
        tag = draw(st.sampled_from(["img", "br", "input", "path"]))
        marker = draw(st.sampled_from(["", ' data-personalize="v"']))
        html = f"<{tag}{marker}{draw(attributes())}{'/' if tag == 'path' else ''}>"
        return Node(html, html)
    tag = draw(TAGS)
    children = draw(st.lists(nodes(depth + 1, in_slot or kind == "slot"), max_size=3))
    inner_html = "".join(child.html for child in children)
    inner_expected = "".join(child.expected for child in children)
    if kind == "slot":
        name = draw(st.sampled_from(["hero", "ship", "a-b"]))
        quoting = draw(st.sampled_from([f'"{name}"', f"'{name}'", name]))
        before, after = draw(attributes()), draw(attributes())
        start = f"<{tag}{before} data-personalize={quoting}{after}>"
        html = f"{start}{inner_html}</{tag}>"
        if in_slot:
            return Node(html, html)
        replaced = replace_all(name, inner_html.encode()).decode()
        return Node(html, f"{start}{replaced}</{tag}>")
    start = f"<{tag}{draw(attributes())}>"
    return Node(f"{start}{inner_html}</{tag}>", f"{start}{inner_expected}</{tag}>")


documents = st.lists(nodes(), max_size=6).map(
    lambda items: Node("".join(n.html for n in items), "".join(n.expected for n in items))
)


@st.composite
def chunkings(draw: st.DrawFn, size: int) -> list[int]:
    cuts = draw(st.lists(st.integers(0, size), max_size=12))
    return sorted(set(cuts))


def feed_in_pieces(html: bytes, cuts: list[int], on_slot, **kwargs) -> bytes:
    rewriter = SlotRewriter(on_slot, **kwargs)
    out = []
    last = 0
    for cut in cuts:
        out.append(rewriter.feed(html[last:cut]))
        last = cut
    out.append(rewriter.close(html[last:]))
    return b"".join(out)


@settings(max_examples=300, deadline=None)
@given(documents, st.data())
def test_generated_documents_are_rewritten_exactly_as_expected(doc: Node, data: st.DataObject) -> None:
    html = doc.html.encode()
    cuts = data.draw(chunkings(len(html)))
    assert feed_in_pieces(html, cuts, replace_all) == doc.expected.encode()


@settings(max_examples=300, deadline=None)
@given(documents, st.data())
def test_output_equals_input_when_every_slot_keeps_its_default(doc: Node, data: st.DataObject) -> None:
    html = doc.html.encode()
    cuts = data.draw(chunkings(len(html)))
    assert feed_in_pieces(html, cuts, keep_all) == html


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_arbitrary_bytes_are_chunking_invariant_and_identity_when_kept(raw: bytes, data: st.DataObject) -> None:
    html = b'<div data-personalize="a">' + raw + b"</div>" + raw
    cuts = data.draw(chunkings(len(html)))
    assert feed_in_pieces(html, cuts, keep_all) == html
    assert feed_in_pieces(html, cuts, replace_all) == feed_in_pieces(html, [], replace_all)


@settings(max_examples=100, deadline=None)
@given(documents)
def test_one_byte_chunks_give_the_same_output(doc: Node) -> None:
    html = doc.html.encode()
    assert rewrite(html, chunk=1)[0] == doc.expected.encode()


SOUP = st.sampled_from(
    [
        *("<", ">", "/", "!", "-", "?", '"', "'", "=", " ", "a", "div", "script", "data-personalize", "x", "\n"),
        *("<!--", "-->", "</script>", "<div data-personalize=a>", "</div>", "<title>", "</title>"),
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(SOUP, max_size=40).map("".join), st.data())
def test_tag_soup_is_chunking_invariant(soup: str, data: st.DataObject) -> None:
    html = soup.encode()
    cuts = data.draw(chunkings(len(html)))
    assert feed_in_pieces(html, cuts, keep_all) == html
    assert feed_in_pieces(html, cuts, replace_all) == feed_in_pieces(html, [], replace_all)


BANNER = b"<section>banner</section>"


@pytest.mark.parametrize("chunk", [None, 1, 5])
def test_insertion_goes_before_the_first_body_end_tag_outside_comments_and_scripts(chunk: int | None) -> None:
    html = b"<body><!-- </body> --><script>'</body>'</script><p>x</p></BODY></html>"
    out, _ = rewrite(html, chunk=chunk, before_body_end=BANNER)
    assert out == b"<body><!-- </body> --><script>'</body>'</script><p>x</p>" + BANNER + b"</BODY></html>"


@pytest.mark.parametrize("chunk", [None, 3])
def test_insertion_goes_at_the_end_of_a_document_without_a_body_end_tag(chunk: int | None) -> None:
    html = b'<p>x</p><div data-personalize="a">y</div>'
    out, _ = rewrite(html, chunk=chunk, before_body_end=BANNER)
    assert out == b'<p>x</p><div data-personalize="a"><b>a:1</b></div>' + BANNER


def test_insertion_happens_after_slots_before_the_body_end() -> None:
    html = b'<body><div data-personalize="a">y</div></body>'
    out, _ = rewrite(html, before_body_end=BANNER)
    assert out == b'<body><div data-personalize="a"><b>a:1</b></div>' + BANNER + b"</body>"


@settings(max_examples=200, deadline=None)
@given(documents, st.data())
def test_insertion_is_chunking_invariant(doc: Node, data: st.DataObject) -> None:
    html = (doc.html + "</body></html>").encode()
    cuts = data.draw(chunkings(len(html)))
    out = feed_in_pieces(html, cuts, replace_all, before_body_end=BANNER)
    assert out == (doc.expected + "</body></html>").encode().replace(b"</body>", BANNER + b"</body>", 1)


@pytest.mark.parametrize("chunk", [None, 7, 30])
def test_a_tag_longer_than_the_cap_is_text_whatever_the_chunking(chunk: int | None) -> None:
    html = b'<div title="' + b"x" * 80 + b'<!-- "><p data-personalize="a">y</p> -->'
    out, calls = rewrite(html, chunk=chunk, max_slot_bytes=64)
    assert calls == []  # the long tag is text, so `<!--` opens a comment that hides the slot
    assert out == html


@pytest.mark.parametrize("chunk", [None, 1, 91])
def test_text_running_past_the_cap_gives_the_slot_up_before_the_next_tag(chunk: int | None) -> None:
    html = b'<div data-personalize="a">' + b"x" * 65 + b'<section data-personalize="b">inner</section></div>'
    _, calls = rewrite(html, chunk=chunk, max_slot_bytes=64)
    assert calls == [("b", b"inner")]


@settings(max_examples=300, deadline=None)
@given(documents, st.data(), st.sampled_from([24, 40, 96]), st.booleans(), st.sampled_from([2, 5, 4096]))
def test_chunks_sent_on_untokenized_past_the_cap_change_nothing(
    doc: Node, data: st.DataObject, cap: int, banner: bool, probe: int
) -> None:
    # With a small cap, the bytes sent on before they are tokenized overflow it again and again,
    # and their oldest part is tokenized while later chunks are still held untokenized; a tiny
    # probe makes constructs cut by a chunk's end outlast the start of the next one.
    html = (doc.html * 3 + "</body></html>").encode()
    cuts = data.draw(chunkings(len(html)))
    insert = BANNER if banner else None
    whole, _ = rewrite(html, max_slot_bytes=cap, before_body_end=insert)
    default, rewriter_module._PROBE = rewriter_module._PROBE, probe
    try:
        assert feed_in_pieces(html, cuts, replace_all, max_slot_bytes=cap, before_body_end=insert) == whole
    finally:
        rewriter_module._PROBE = default


class _CountingPattern:
    """A compiled pattern that adds up how many bytes each match was allowed to read."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern
        self.read = 0

    def match(self, buf: bytes, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[bytes] | None:
        self.read += min(endpos, len(buf)) - pos
        return self.pattern.match(buf, pos, endpos)


@pytest.mark.parametrize("unit", [b"<script", b"<a b='", b"</body", b"<div"])
@pytest.mark.parametrize("chunk", [None, 4096])
def test_markup_that_never_closes_is_read_in_linear_time(
    unit: bytes, chunk: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without a `>` after them, none of these can end a tag; each used to be read on to the end
    # of the buffer or the cap, one `<` after the other.
    html = b'<p data-personalize="a">x</p>' + unit * 20_000
    tag, boring = _CountingPattern(rewriter_module._TAG), _CountingPattern(rewriter_module._BORING)
    monkeypatch.setattr(rewriter_module, "_TAG", tag)
    monkeypatch.setattr(rewriter_module, "_BORING", boring)
    skipped = 0
    if rewriter_module._NATIVE is not None:
        skip, ifind = rewriter_module._NATIVE

        def counting_skip(buf: bytes, pos: int, end: int, stop_tag: bytes | None, stop_attr: bytes | None) -> int:
            nonlocal skipped
            skipped += min(end, len(buf)) - pos
            return skip(buf, pos, end, stop_tag, stop_attr)

        monkeypatch.setattr(rewriter_module, "_NATIVE", (counting_skip, ifind))
    out, calls = rewrite(html, chunk=chunk, before_body_end=BANNER, max_slot_bytes=64 * 1024)
    assert out.startswith(b'<p data-personalize="a"><b>a:1</b></p>') and calls == [("a", b"x")]
    assert tag.read + boring.read + skipped < 20 * len(html)


@pytest.mark.parametrize("tail", [b'<a b=">"' * 12_000, b"<a " * 30_000 + b"/=></body></html>"])
@pytest.mark.parametrize("chunk", [None, 4096])
def test_tags_that_fail_after_reading_far_cost_a_bounded_amount(
    tail: bytes, chunk: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each `<` here starts a tag that is read far before it fails (its `>` only inside quoted
    # values, or an `=` where no attribute may start), and the next `<` is inside what was read.
    html = b'<p data-personalize="a">x</p>' + tail
    tag = _CountingPattern(rewriter_module._TAG)
    monkeypatch.setattr(rewriter_module, "_TAG", tag)
    rewriter = SlotRewriter(replace_all, before_body_end=BANNER)
    pieces = [html] if chunk is None else [html[i : i + chunk] for i in range(0, len(html), chunk)]
    out = []
    for n, piece in enumerate(pieces, 1):
        try:
            out.append(rewriter.close(piece) if n == len(pieces) else rewriter.feed(piece))
        except MarkupTooCostly:
            out.append(rewriter.release() + piece)  # as the middleware does: the rest is the app's own
    # Fed in chunks, the tail is sent on untokenized: nothing to find in it but the banner's place.
    assert b"".join(out).removesuffix(BANNER) in (html, html.replace(b">x</p>", b"><b>a:1</b></p>", 1))
    allowed = rewriter_module._RETRY_ALLOWANCE + rewriter_module._RETRY_FACTOR * len(html)
    assert tag.read < allowed + rewriter_module.DEFAULT_MAX_SLOT_BYTES + 4 * len(html)
