"""Properties of every reader of visitor input, for arbitrary input: no exception, only valid reduced values.

The invariants live in fuzz/checks.py, shared with the atheris targets; this file drives them
with generated values. tests/test_rewriter.py covers the rewriter's exact output; here the
rewriter gets random slot content and replacements and must keep the page's structure.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from edge_personalize.signals.referrer import classify_referral
from fuzz.checks import (
    GRANTED,
    SIGNING_KEY,
    check_client_ip,
    check_consent_header,
    check_consent_mutation,
    check_device,
    check_language,
    check_location,
    check_referral,
    check_safe_next,
    geo_headers,
    read_consent,
    rewrite,
    signed_cookie,
)

CONSENT_SALT = "edge-personalize.consent"
FAST = settings(max_examples=150, deadline=None)

# Header values as an ASGI server hands them over: any bytes, decoded as latin-1.
asgi_text = st.binary(max_size=300).map(lambda raw: raw.decode("latin-1"))
# Real text from callers that are not ASGI servers, and values far beyond any sane header.
huge_text = st.builds(lambda part, times: part * times, st.text(min_size=1, max_size=12), st.integers(500, 5000))


def values(*pieces: str) -> st.SearchStrategy[str]:
    """Arbitrary text, latin-1 bytes, huge values, and soups of the pieces a parser looks for."""
    soup = st.lists(st.sampled_from([*pieces, " ", ",", ";", "\x00", "\t", "é", "\u2028", "\ufffd"]), max_size=30)
    return st.one_of(st.text(max_size=300), asgi_text, huge_text, soup.map("".join))


accept_languages = values("en", "de-AT", "zh-Hant-TW", "sr-Latn", "x-private", "*", "q=0", "q=0.5", "q=1.000", "-", "_")
user_agents = values(
    "Mozilla/5.0 ",
    "(iPhone; CPU iPhone OS 17_0 like Mac OS X)",
    "(Linux; Android 13; Tablet; rv:120.0)",
    "(Macintosh; Intel Mac OS X 10_15_7)",
    "Safari/605.1.15",
    "Chrome/120.0",
    "Googlebot/2.1",
    "Mobile",
    "cubot",
)
hosts = st.one_of(
    st.sampled_from(
        ["www.google.co.uk", "mail.yahoo.com", "t.co", "localhost", "[::1]", "127.0.0.1", "xn--bcher-kva.ch"]
    ),
    st.sampled_from(["bücher.de", "2130706433", "0x7f.1", "a..b", "-a.com", "a" * 70 + ".com", "shop.example.com"]),
    st.text(max_size=40),
)


@st.composite
def referers(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["https://", "http://", "android-app://", "ftp://", "", "//", "HTTPS://"]))
    userinfo = draw(st.sampled_from(["", "user:pw@", "@"]))
    port = draw(st.sampled_from(["", ":443", ":x", ":99999"]))
    path = draw(st.sampled_from(["", "/", "/search", "/%2F..", "/\u00e9"])) + draw(st.text(max_size=20))
    return f"{scheme}{userinfo}{draw(hosts)}{port}{path}"


query_strings = values("utm_source=", "utm_medium=", "utm_campaign=", "gclid=", "e-mail", "email", "&", "=", "%", "+")


# --- Language, device and referrer --------------------------------------------------------------


@FAST
@given(accept_languages)
def test_any_accept_language_gives_unique_tags_and_a_configured_language_or_none(header: str) -> None:
    check_language(header)


@FAST
@given(user_agents, st.one_of(st.none(), st.sampled_from(["?1", "?0", " ?1 ", "?2", "1"]), asgi_text))
def test_any_user_agent_gives_a_valid_device(user_agent: str, ch_ua_mobile: str | None) -> None:
    check_device(user_agent, ch_ua_mobile)


@FAST
@given(
    st.one_of(st.none(), referers(), values("https://", "google.com", "/", "?", "#", "@", ":")), hosts, query_strings
)
def test_any_referer_gives_a_valid_category_and_only_a_reduced_domain(
    referer: str | None, host: str, query: str
) -> None:
    check_referral(referer, host or None, query)


@FAST
@given(
    st.sampled_from(["www.google.de", "news.ycombinator.com", "shop.example.com"]), st.text("abcxyz0123", min_size=8)
)
def test_referer_path_and_query_never_leave_the_referral(host: str, secret: str) -> None:
    referral = classify_referral(f"https://{host}/{secret}?q={secret}#{secret}", None, "")
    assert secret not in repr(referral)


# --- Location and client address ---------------------------------------------------------------

geo_values = st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b"DE", b"de ", b"XX", b"T1", b"US-CA", b"CA", b"M%C3%BCnchen", b"\xc3\xa9", b"%ZZ", b"?", b"--"]),
    st.text(max_size=30).map(lambda text: text.encode("utf-8")),
    st.binary(min_size=1, max_size=4).map(lambda raw: raw * 600),
)
edgescape = st.lists(
    st.tuples(st.sampled_from(["country_code", "region_code", "city", "lat", "COUNTRY_CODE ", ""]), geo_values),
    max_size=5,
).map(lambda fields: b",".join(key.encode() + b"=" + value for key, value in fields))


@FAST
@given(st.lists(geo_values, min_size=3, max_size=3), edgescape)
def test_any_geo_header_gives_a_country_code_region_and_city_or_nothing(fields: list[bytes], akamai: bytes) -> None:
    check_location(geo_headers(*fields, edgescape=akamai))


addresses = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda ip: f"::ffff:{ip}"),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]:443"),
    st.ip_addresses(v=4).map(lambda ip: f"{ip}:51234"),
    st.sampled_from(["unknown", "", " ", "1.2.3", "01.2.3.4", "fe80::1%eth0", "[::1", "::1]:80", "1.2.3.4:x"]),
    asgi_text,
)


@FAST
@given(st.one_of(st.none(), addresses), st.one_of(st.none(), st.lists(addresses, max_size=5).map(", ".join), huge_text))
def test_any_peer_and_forwarded_for_give_a_valid_address_or_none(peer: str | None, forwarded_for: str | None) -> None:
    check_client_ip(peer, forwarded_for)


# --- The consent cookie -------------------------------------------------------------------------

cookie_headers = st.one_of(
    st.binary(max_size=300),
    st.tuples(
        st.sampled_from([b"ep_consent=", b"__Host-ep_consent=", b"a=1; ep_consent=", b'ep_consent="']),
        st.binary(max_size=200),
    ).map(b"".join),
    # A well-formed grant, signed with another key or for another purpose.
    st.sampled_from([("other-secret-0123456789abcdefghij", CONSENT_SALT), (SIGNING_KEY, "edge-personalize.other")]).map(
        lambda signer: b"ep_consent=" + URLSafeTimedSerializer(*signer).dumps(GRANTED).encode()
    ),
)


@FAST
@given(cookie_headers, st.one_of(st.none(), st.sampled_from([b"1", b" 1 ", b"0", b"\xff"])))
def test_a_cookie_header_we_did_not_write_is_never_a_grant(cookie: bytes, gpc: bytes | None) -> None:
    check_consent_header(cookie, gpc)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=4, max_size=24))
def test_an_edited_signed_cookie_is_a_grant_only_if_the_signed_content_is_untouched(edits: bytes) -> None:
    check_consent_mutation(edits)


def test_the_unedited_signed_cookie_is_a_grant() -> None:
    assert read_consent(b"ep_consent=" + signed_cookie()).state == "granted"


# --- Return paths -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.none(),
        values("/", "//", "\\", "http:", "javascript:", "%2F", "%5C", "..", "@", "#", "?", "\r\n", "\x7f", "\x85"),
    )
)
def test_any_return_path_becomes_a_local_path_with_a_single_leading_slash(value: str | None) -> None:
    check_safe_next(value)


# --- The rewriter on random slot content --------------------------------------------------------

VOID = {"br", "img", "hr", "input"}
NAMES = ["hero", "ship", "a-b"]
text_runs = st.text(max_size=20).map(lambda text: html.escape(text, quote=False))
attribute_values = st.text(max_size=15).map(lambda text: html.escape(text, quote=True))


comments = st.text("ab <=/", max_size=10).map(lambda text: f"<!--{text}-->")
scripts = st.sampled_from(["", "if (a<b) {}", '"<\\/div>"']).map(lambda code: f"<script>{code}</script>")


@st.composite
def fragments(draw: st.DrawFn, depth: int = 0) -> str:
    """Well-formed HTML: every element closed, text and attribute values escaped."""
    parts = []
    for _ in range(draw(st.integers(0, 4 if depth < 3 else 0))):
        kind = draw(st.sampled_from(["text", "element", "void", "comment", "script", "slot"]))
        attrs = "".join(
            f' {draw(st.sampled_from(["class", "title", "data-x"]))}="{draw(attribute_values)}"'
            for _ in range(draw(st.integers(0, 2)))
        )
        if kind == "text":
            parts.append(draw(text_runs))
        elif kind == "void":
            parts.append(f"<{draw(st.sampled_from(sorted(VOID)))}{attrs}>")
        elif kind == "comment":
            parts.append(draw(comments))
        elif kind == "script":
            parts.append(draw(scripts))
        else:
            tag = draw(st.sampled_from(["div", "section", "p", "span"]))
            marker = f' data-personalize="{draw(st.sampled_from(NAMES))}"' if kind == "slot" else ""
            parts.append(f"<{tag}{attrs}{marker}>{draw(fragments(depth + 1))}</{tag}>")
    return "".join(parts)


class _Tags(HTMLParser):
    """The start and end tags of a page, with the inside of every top-level slot left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.outside: list[tuple[str, str]] = []
        self.stack: list[str] = []
        self.slot_depth: int | None = None
        self.slots = 0
        self.well_formed = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.slot_depth is None:
            self.outside.append(("start", tag))
        if tag in VOID:
            return
        self.stack.append(tag)
        if self.slot_depth is None and any(
            name == "data-personalize" and (value or "").strip() for name, value in attrs
        ):
            self.slot_depth = len(self.stack)
            self.slots += 1

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.well_formed = False
        if self.slot_depth is not None and len(self.stack) < self.slot_depth:
            self.slot_depth = None
        if self.slot_depth is None:
            self.outside.append(("end", tag))


def tags(page: bytes) -> _Tags:
    parser = _Tags()
    parser.feed(page.decode("utf-8"))
    parser.close()
    assert parser.well_formed and not parser.stack
    return parser


@settings(max_examples=200, deadline=None)
@given(fragments(), st.fixed_dictionaries({name: fragments(depth=1) for name in NAMES}), st.data())
def test_slots_with_random_content_are_all_seen_and_the_page_stays_well_formed(
    page: str, replacements: dict[str, str], data: st.DataObject
) -> None:
    source = page.encode()
    before = tags(source)
    cuts = data.draw(st.lists(st.integers(0, len(source)), max_size=6))
    output, _, slots_seen = rewrite(source, cuts, lambda name, inner: replacements[name].encode())
    after = tags(output)
    assert slots_seen == before.slots == after.slots
    assert after.outside == before.outside
