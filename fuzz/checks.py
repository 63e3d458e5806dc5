"""The invariants every fuzz target asserts, in pure Python.

Each target takes raw bytes, so a crashing input found by atheris replays here without it:
`TARGETS` names them, and the `check_*` functions are the invariants the property tests drive
with generated values.
"""

from __future__ import annotations

import ipaddress
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, get_args
from urllib.parse import unquote

from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from edge_personalize import rewriter as rewriter_module
from edge_personalize.config import Config, Route, SiteSettings, Slot, Variant
from edge_personalize.consent import COOKIE_NAME, SECURE_COOKIE_NAME, Consent, ConsentManager
from edge_personalize.forms import safe_next
from edge_personalize.replay import python_key_inputs
from edge_personalize.rewriter import (
    _ATTR,
    _BORING,
    _TAG,
    DEFAULT_MAX_SLOT_BYTES,
    MARKER,
    MarkupTooCostly,
    SlotRewriter,
)
from edge_personalize.signals.device import Device, DeviceClass, classify_device
from edge_personalize.signals.language import MAX_ENTRIES, LanguageNegotiator, parse_accept_language
from edge_personalize.signals.location import PROVIDERS, HeaderLocator, client_ip, provider_headers
from edge_personalize.signals.referrer import ReferrerCategory, classify_referral

# Invariants that fail today because of a reported, not yet fixed bug. Each has a strict xfail
# test in tests/test_fuzz_regressions.py; when the bug is fixed, drop it here and there.
OPEN_ISSUES: frozenset[str] = frozenset()

# --- The rewriter -------------------------------------------------------------------------------

BANNER = b"<!--fuzz-banner-->"
MAX_SLOT_CHOICES = (DEFAULT_MAX_SLOT_BYTES, 8, 64, 512)
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def keep(name: str, inner: bytes) -> None:
    return None


def replace(name: str, inner: bytes) -> bytes:
    return f"<b>{name}:{len(inner)}</b>".encode()


def rewrite(
    html: bytes,
    cuts: list[int],
    on_slot: Callable[[str, bytes], bytes | None],
    *,
    max_slot_bytes: int = DEFAULT_MAX_SLOT_BYTES,
    before_body_end: bytes | None = None,
) -> tuple[bytes, list[tuple[str, bytes]], int]:
    """Output, callback calls and slots seen when `html` arrives cut at the offsets `cuts`.

    Where the C scanner is in use, the regex fallback must give exactly the same.
    """
    result = _rewrite(html, cuts, on_slot, max_slot_bytes=max_slot_bytes, before_body_end=before_body_end)
    native = rewriter_module._NATIVE
    if native is not None:
        rewriter_module._NATIVE = None
        try:
            pure = _rewrite(html, cuts, on_slot, max_slot_bytes=max_slot_bytes, before_body_end=before_body_end)
        finally:
            rewriter_module._NATIVE = native
        assert result == pure, f"the C scanner and the regex disagree: cuts={sorted(set(cuts))}"
    return result


def _rewrite(
    html: bytes,
    cuts: list[int],
    on_slot: Callable[[str, bytes], bytes | None],
    *,
    max_slot_bytes: int,
    before_body_end: bytes | None,
) -> tuple[bytes, list[tuple[str, bytes]], int]:
    calls: list[tuple[str, bytes]] = []

    def callback(name: str, inner: bytes) -> bytes | None:
        calls.append((name, inner))
        return on_slot(name, inner)

    rewriter = SlotRewriter(callback, max_slot_bytes=max_slot_bytes, before_body_end=before_body_end)
    out = []
    last = 0
    for cut in sorted(set(cuts)):
        out.append(rewriter.feed(html[last:cut]))
        last = cut
    out.append(rewriter.close(html[last:]))
    return b"".join(out), calls, rewriter.slots_seen


def check_rewriter(html: bytes, cuts: list[int], *, max_slot_bytes: int, banner: bool) -> None:
    """Identity when every slot keeps its default, and the same result however the bytes are cut;
    unless the markup is too costly to tokenize, when the rewriter gives up (and the middleware
    serves the rest of the page as the app made it)."""
    try:
        _check_rewriter(html, cuts, max_slot_bytes=max_slot_bytes, banner=banner)
    except MarkupTooCostly:
        pass


def _check_rewriter(html: bytes, cuts: list[int], *, max_slot_bytes: int, banner: bool) -> None:
    insert = BANNER if banner else None
    kept, _, _ = rewrite(html, cuts, keep, max_slot_bytes=max_slot_bytes, before_body_end=insert)
    if insert is None or html.startswith(UTF16_BOMS):  # UTF-16 pages pass through untouched
        assert kept == html, "a None callback changed the document"
    else:
        assert len(kept) == len(html) + len(insert), "the insertion is not the only change"
        starts = [m.start() for m in re.finditer(re.escape(insert), kept)]
        assert any(kept[:i] + kept[i + len(insert) :] == html for i in starts), "the insertion is not the only change"
    whole = rewrite(html, [], replace, max_slot_bytes=max_slot_bytes, before_body_end=insert)
    pieces = rewrite(html, cuts, replace, max_slot_bytes=max_slot_bytes, before_body_end=insert)
    assert pieces == whole, f"chunking changed the result: cuts={sorted(set(cuts))}"


def rewriter_target(data: bytes) -> None:
    """Byte 0 picks the slot size cap and the banner, byte 1 the number of cuts, then two bytes per cut, then HTML."""
    if len(data) < 2:
        check_rewriter(data, [], max_slot_bytes=DEFAULT_MAX_SLOT_BYTES, banner=False)
        return
    flags, count = data[0], data[1] % 16
    header, html = data[2 : 2 + 2 * count], data[2 + 2 * count :]
    cuts = [int.from_bytes(header[i : i + 2], "big") % (len(html) + 1) for i in range(0, len(header) - 1, 2)]
    cap = MAX_SLOT_CHOICES[flags & 3] if "slot-cap-boundary" not in OPEN_ISSUES else DEFAULT_MAX_SLOT_BYTES
    check_rewriter(html, cuts, max_slot_bytes=cap, banner=bool(flags & 4))


# --- The C scanner against the regexes it stands in for --------------------------------------

try:
    from edge_personalize import _speedups
except ImportError:  # not built: nothing to compare
    _speedups = None  # type: ignore[assignment]

_BORING_TOKEN = re.compile(_BORING.pattern.removesuffix(b"*+"))  # one step of the run
SKIP_STOPS = ((None, None), (None, MARKER), (b"body", MARKER), (b"div", None), (b"a", None), (b"script", b"x"))


def skip_reference(
    buf: bytes, pos: int, end: int, stop_tag: bytes | None = None, stop_attr: bytes | None = None
) -> int:
    """What `_speedups.skip` must return, from the rewriter's own regexes, one token at a time."""
    pos = min(max(pos, 0), len(buf))
    while True:
        token = _BORING_TOKEN.match(buf, pos, end)
        if token is None:
            return pos
        tag = _TAG.fullmatch(token.group())
        if tag is not None:
            if stop_tag is not None and tag.group(2).lower() == stop_tag:
                return pos
            names = (attr.group(1).lower() for attr in _ATTR.finditer(tag.group(3)))
            if stop_attr is not None and not tag.group(1) and stop_attr in names:
                return pos
        pos = token.end()


def ifind_reference(buf: bytes, pos: int, needle: bytes, other: bytes | None = None) -> int:
    lowered = buf.lower()
    found = [i for i in (lowered.find(needle, pos), -1 if other is None else lowered.find(other, pos)) if i >= 0]
    return min(found, default=-1)


def check_speedups(buf: bytes, pos: int, end: int, stops: int) -> None:
    """`skip` and `ifind` agree with the regexes and `bytes.find` on any bytes, positions and stops."""
    if _speedups is None:
        return
    stop_tag, stop_attr = SKIP_STOPS[stops % len(SKIP_STOPS)]
    expected = skip_reference(buf, pos, end, stop_tag, stop_attr)
    got = _speedups.skip(buf, pos, end, stop_tag, stop_attr)
    assert got == expected, f"skip(pos={pos}, end={end}, {stop_tag!r}, {stop_attr!r}) = {got}, expected {expected}"
    if stop_tag is None and stop_attr is None:
        run = _BORING.match(buf, pos, end)
        assert run is None or got == run.end(), f"skip(pos={pos}, end={end}) = {got}, _BORING: {run.end()}"
    for needle, other in ((MARKER, None), (MARKER, b"</body"), (b"</body", None)):
        expected = ifind_reference(buf, pos, needle, other)
        got = _speedups.ifind(buf, pos, needle, other)
        assert got == expected, f"ifind({pos}, {needle!r}, {other!r}) = {got}, expected {expected}"


KEY_WANTED = frozenset({b"accept-language", b"cookie", b"referer", b"x-personalize-trace"})


def check_key_inputs(buf: bytes) -> None:
    """`key_inputs` in C tells apart exactly what the pure-Python encoding tells apart. The bytes
    are read as lines of `name:value` request headers, the last line the path; the inputs are
    compared with the same inputs changed in one place at a time."""
    if _speedups is None:
        return
    *lines, last = buf.split(b"\n")
    headers = [(name.lower(), value) for name, _, value in (line.partition(b":") for line in lines)]
    path = last.decode("utf-8", "surrogateescape")  # lone surrogates too
    base = (headers, path, b"q=1", "127.0.0.1")
    changed = [
        (headers[1:], *base[1:]),
        (headers[::-1], *base[1:]),
        (headers, path + "\u00e9", *base[2:]),
        (*base[:3], "::1"),
    ]

    def both(case: tuple[Any, ...]) -> tuple[bytes | None, bytes | None]:
        args = (KEY_WANTED, b"x-personalize-trace", *case)
        return _speedups.key_inputs(*args), python_key_inputs(*args)

    native, python = both(base)
    assert (native is None) == (python is None), f"key_inputs: C {native!r}, Python {python!r}"
    for case in changed:
        native_other, python_other = both(case)
        assert (native == native_other) == (python == python_other), f"key_inputs told apart differently: {case!r}"


def speedups_target(data: bytes) -> None:
    """Byte 0 picks the stops, bytes 1 and 2 where to start and end (from the end), then the bytes
    to scan, which are also read as a request's headers and path for `key_inputs`."""
    header, buf = data[:3].ljust(3, b"\0"), data[3:]
    check_speedups(buf, header[1] % (len(buf) + 1), len(buf) - header[2] % (len(buf) + 1), header[0])
    check_key_inputs(buf)


# --- Header parsers -----------------------------------------------------------------------------

LANGUAGE_SETS = (("en", "de", "fr"), ("en-US", "pt-BR", "zh-Hant", "sr-Latn", "es-419", "nb"), ("de-AT",))
NEGOTIATORS = tuple((frozenset(languages), LanguageNegotiator(languages)) for languages in LANGUAGE_SETS)
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


def check_language(header: str | None) -> None:
    tags = parse_accept_language(header)
    assert isinstance(tags, list) and len(tags) <= MAX_ENTRIES
    assert len(set(tags)) == len(tags), f"duplicate tags {tags!r}"
    assert all(_LANGUAGE_TAG.fullmatch(tag) for tag in tags), f"not a language tag in {tags!r}"
    for languages, negotiator in NEGOTIATORS:
        choice = negotiator.negotiate(header)
        assert choice is None or choice in languages, f"{choice!r} is not one of {sorted(languages)}"


DEVICE_KINDS = frozenset(get_args(DeviceClass))


def check_device(user_agent: str | None, ch_ua_mobile: str | None) -> None:
    device = classify_device(user_agent, ch_ua_mobile)
    assert isinstance(device, Device)
    assert device.kind in DEVICE_KINDS and isinstance(device.is_bot, bool)
    assert device.source in ("client hints", "user agent", "none")
    assert not device.is_bot or device.kind == "unknown"


CATEGORIES = frozenset(get_args(ReferrerCategory))
_DOMAIN = re.compile(r"[a-z0-9_\-]{1,63}(?:\.[a-z0-9_\-]{1,63})*")
_CAMPAIGN = re.compile(r"[A-Za-z0-9_.\-](?:[A-Za-z0-9 _.\-]{0,62}[A-Za-z0-9_.\-])?")


def check_referral(referer: str | None, site_host: str | None, query_string: str) -> None:
    referral = classify_referral(referer, site_host, query_string)
    assert referral.category in CATEGORIES
    # Only a reduced host name leaves the module: no path, query, port, user or scheme.
    domain = referral.domain
    assert domain is None or (len(domain) <= 253 and _DOMAIN.fullmatch(domain)), f"domain {domain!r}"
    campaign = referral.campaign
    assert campaign is None or _CAMPAIGN.fullmatch(campaign), f"campaign {campaign!r}"
    if "utm_campaign" not in query_string.lower():
        assert campaign is None
    if referer is None or not referer.strip():
        assert domain is None


LOCATORS = (
    *(HeaderLocator(headers) for headers in PROVIDERS.values()),
    HeaderLocator(provider_headers("custom", "x-country", "x-region", "x-city")),
)
# Which of country, region and city each provider's header carries (Akamai's one header holds all three).
HEADER_FIELDS = {
    name: index
    for spec in [*PROVIDERS.values(), provider_headers("custom", "x-country", "x-region", "x-city")]
    if spec.encoding != "edgescape"
    for index, name in enumerate((spec.country, spec.region, spec.city))
    if name is not None
}
_COUNTRY = re.compile(r"[A-Z]{2}")
_REGION = re.compile(r"[A-Z0-9]{1,3}")


def check_location(values: Mapping[str, bytes]) -> None:
    """Every provider's locator on the same headers: as an ASGI scope carries them, and as plain text."""
    raw = [(name.encode("latin-1"), value) for name, value in values.items()]
    as_text = {name: value.decode("utf-8", "replace") for name, value in values.items()}
    for headers in (Headers(raw=raw), as_text):
        for locator in LOCATORS:
            location = locator.locate(headers)
            country = location.country
            assert country is None or _COUNTRY.fullmatch(country), f"country {country!r}"
            if country is None:
                assert location.region is None and location.city is None
                continue
            assert location.region is None or _REGION.fullmatch(location.region), f"region {location.region!r}"
            city = location.city
            if city is not None:
                assert 0 < len(city) <= 100 and city == city.strip(), f"city {city!r}"
                categories = [unicodedata.category(ch) for ch in city]
                assert not any(cat[0] == "C" for cat in categories), f"city {city!r}"
                assert any(cat[0] == "L" for cat in categories), f"city {city!r}"


TRUSTED = (
    (),
    (ipaddress.ip_network("127.0.0.1/32"),),
    (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")),
    (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")),
)


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def check_client_ip(peer: str | None, forwarded_for: str | None) -> None:
    for trusted in TRUSTED:
        result = client_ip((peer, 0) if peer is not None else None, forwarded_for, trusted)
        peer_is_address = peer is not None and 0 < len(peer) <= 64 and _is_address(peer.strip())
        assert (result is None) == (not peer_is_address), f"{result!r} for peer {peer!r}"
        if result is not None:
            assert str(ipaddress.ip_address(result)) == result, f"not an address: {result!r}"
        if not trusted and peer is not None and peer_is_address:
            address = ipaddress.ip_address(peer.strip())
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            assert result == str(address), f"{result!r} instead of the untrusted peer {peer!r}"


# --- The consent cookie -------------------------------------------------------------------------

SIGNING_KEY = "fuzz-secret-0123456789abcdefghij"
CONSENT_CONFIG = Config(
    site=SiteSettings(languages=("en", "de", "fr")),
    routes=(Route("/", slots=("hero",)),),
    slots={"hero": Slot(variants=(Variant("german", {"language": "de"}, "support", html="<h1>Hallo</h1>"),))},
)
MANAGER = ConsentManager(CONSENT_CONFIG, [SIGNING_KEY])
GRANTED = {"c": "g", "v": "1", "f": "2024-02-29", "l": "de", "k": "DE"}


class _FixedTimeSigner(TimestampSigner):
    # Signed at the start of yesterday: stable within a day, so a saved input replays the same way.
    def get_timestamp(self) -> int:
        return int(time.time()) // 86400 * 86400 - 86400


def signed_cookie(data: Mapping[str, str] = GRANTED) -> bytes:
    serializer = URLSafeTimedSerializer([SIGNING_KEY], salt="edge-personalize.consent", signer=_FixedTimeSigner)
    return serializer.dumps(dict(data)).encode("ascii")


def read_consent(cookie: bytes | None, *, gpc: bytes | None = None) -> Consent:
    headers = [(b"cookie", cookie)] if cookie is not None else []
    if gpc is not None:
        headers.append((b"sec-gpc", gpc))
    return MANAGER.read({"type": "http", "headers": headers})


def check_consent_header(cookie: bytes, gpc: bytes | None = None) -> None:
    """A Cookie header we did not write never reads as a grant."""
    consent = read_consent(cookie, gpc=gpc)
    assert consent.state in ("unknown", "refused"), f"granted for {cookie!r}"
    if consent.state == "unknown":
        assert consent == Consent()


def mutate(value: bytes, ops: bytes) -> bytes:
    """Apply (position: 2 bytes, operation, byte) edits: replace, insert or delete."""
    out = bytearray(value)
    for i in range(0, len(ops) - 3, 4):
        position = int.from_bytes(ops[i : i + 2], "big") % (len(out) + 1)
        operation, byte = ops[i + 2] % 3, ops[i + 3]
        if operation == 0 and position < len(out):
            out[position] = byte
        elif operation == 1:
            out.insert(position, byte)
        elif position < len(out):
            del out[position]
    return bytes(out)


def check_consent_mutation(ops: bytes) -> None:
    """A signed grant with edited bytes is read as a grant only if what was signed is untouched."""
    original = signed_cookie()
    expected = read_consent(b"ep_consent=" + original)
    assert expected.state == "granted" and expected.language == "de" and expected.country == "DE"
    mutated = mutate(original, ops)
    consent = read_consent(b"ep_consent=" + mutated)
    if consent.state != "granted":
        assert consent == Consent(), f"{consent!r} for {mutated!r}"
        return
    # base64 is lenient about the signature's spelling; the signed payload and timestamp are compared as is.
    cookies = cookie_parser("ep_consent=" + mutated.decode("latin-1"))
    value = cookies.get(SECURE_COOKIE_NAME) or cookies.get(COOKIE_NAME) or ""
    signed_part = value.encode("utf-8").rsplit(b".", 1)[0]
    assert signed_part == original.rsplit(b".", 1)[0], f"granted for a cookie we did not sign: {mutated!r}"
    assert consent == expected


# --- Return paths -------------------------------------------------------------------------------


def check_safe_next(value: str | None) -> None:
    path = safe_next(value)
    # The same path, or "/"; characters a Location header cannot carry come back percent-encoded.
    assert path == "/" or (value is not None and unquote(path) == unquote(value)), f"{path!r} for {value!r}"
    assert path.startswith("/") and not path.startswith("//"), f"{path!r} for {value!r}"
    assert "\\" not in path and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path), f"{path!r}"
    # It goes out as a Location header, which Starlette encodes as latin-1 and browsers read as ASCII.
    assert path.isascii(), f"{path!r} cannot be sent as a Location header"


# --- The parser target --------------------------------------------------------------------------


def _decode(raw: bytes, as_latin1: bool) -> str:
    # ASGI servers hand header bytes over decoded as latin-1; other callers pass real text.
    return raw.decode("latin-1") if as_latin1 else raw.decode("utf-8", "replace")


def _fields(raw: bytes, count: int) -> list[bytes]:
    parts = raw.split(b"\n", count - 1)
    return parts + [b""] * (count - len(parts))


def _language(raw: bytes, text: Callable[[bytes], str]) -> None:
    check_language(text(raw))


def _device(raw: bytes, text: Callable[[bytes], str]) -> None:
    user_agent, hint = _fields(raw, 2)
    check_device(text(user_agent), text(hint) if hint else None)


def _referral(raw: bytes, text: Callable[[bytes], str]) -> None:
    referer, host, query = _fields(raw, 3)
    check_referral(text(referer), text(host) if host else None, query.decode("latin-1"))


def geo_headers(country: bytes, region: bytes, city: bytes, edgescape: bytes) -> dict[str, bytes]:
    """The same values under every provider's header names."""
    fields = (country, region, city)
    return {**{name: fields[index] for name, index in HEADER_FIELDS.items()}, "x-akamai-edgescape": edgescape}


def _location(raw: bytes, text: Callable[[bytes], str]) -> None:
    country, region, city = _fields(raw, 3)
    check_location(geo_headers(country, region, city, raw))


def _client_ip(raw: bytes, text: Callable[[bytes], str]) -> None:
    peer, forwarded = _fields(raw, 2)
    check_client_ip(text(peer) if peer else None, text(forwarded))


def _consent_header(raw: bytes, text: Callable[[bytes], str]) -> None:
    cookie, gpc = _fields(raw, 2)
    check_consent_header(cookie, gpc or None)


def _consent_mutation(raw: bytes, text: Callable[[bytes], str]) -> None:
    check_consent_mutation(raw)


def _safe_next(raw: bytes, text: Callable[[bytes], str]) -> None:
    check_safe_next(text(raw))


PARSER_TARGETS = (_language, _device, _referral, _location, _client_ip, _consent_header, _consent_mutation, _safe_next)


def parsers_target(data: bytes) -> None:
    """Byte 0 picks the parser, byte 1 the decoding (even: latin-1 as ASGI does, odd: UTF-8); newlines split fields."""
    if len(data) < 2:
        return
    as_latin1 = data[1] % 2 == 0
    PARSER_TARGETS[data[0] % len(PARSER_TARGETS)](data[2:], lambda raw: _decode(raw, as_latin1))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "rewriter": rewriter_target,
    "parsers": parsers_target,
    "speedups": speedups_target,
}
