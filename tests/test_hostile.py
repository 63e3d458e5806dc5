"""Hostile requests and pages (tests/data/hostile.json) through the example shop and a minimal app.

Requests go straight to the ASGI app with raw byte headers, so values no HTTP client would send
(NUL bytes, invalid UTF-8, 64 KiB headers) reach the middleware as a lenient server would pass them.
Every case: the status the app intended, no payload in the output as it was sent, and no cookie.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from itsdangerous import URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Message

from edge_personalize import Config, Limits, LocationSettings, PersonalizeMiddleware, Route, SiteSettings, Slot, Variant
from edge_personalize.forms import MAX_FORM_BYTES
from tests.conftest import DATA, SECRET

CORPUS: dict[str, Any] = json.loads((DATA / "hostile.json").read_text(encoding="utf-8"))
SHOP = Path(__file__).parent.parent / "examples" / "shop"
CLIENT = ("203.0.113.7", 50123)

MINIMAL_PAGE = (
    b"<!doctype html><html><head><title>t</title></head><body>"
    b'<section data-personalize="hero"><h1>Welcome</h1></section>'
    b'<div data-personalize="place">somewhere</div>'
    b'<div data-personalize="source">from anywhere</div>'
    b'<div data-personalize="device">any device</div>'
    b'<div data-personalize="reminder">new here?</div>'
    b"</body></html>"
)
ECHO_TEMPLATE = (
    "<p>{{ visitor.language }} {{ visitor.country }} {{ visitor.referrer }} {{ visitor.campaign }} "
    "{{ visitor.device }}</p>"
)
GERMAN_VARIANT = b"<h1>Willkommen</h1>"


def as_bytes(value: Any) -> bytes:
    """A corpus value: UTF-8 text, {"latin1": text} for raw bytes, {"repeat": text, "bytes": n}, or a list of those."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list):
        return b"".join(as_bytes(part) for part in value)
    if "latin1" in value:
        return str(value["latin1"]).encode("latin-1")
    unit = as_bytes(value["repeat"])
    return unit * (int(value["bytes"]) // len(unit))


# --- the apps ------------------------------------------------------------------------------------


def minimal_config(templates: Path) -> Config:
    """Every signal a request carries reaches a badge or a template on "/"."""
    always = ("search", "social", "email", "campaign", "internal", "other", "direct")
    slots = {
        "hero": Slot(variants=(Variant("german", {"language": "de"}, "support", html=GERMAN_VARIANT.decode()),)),
        "place": Slot(
            variants=(
                Variant(
                    "anywhere",
                    {"all": [{"not": {"city": "Nowhere"}}, {"not": {"region": "AT-99"}}]},
                    "support",
                    html="<p>near you</p>",
                ),
            )
        ),
        "source": Slot(
            variants=(
                Variant(
                    "echo",
                    {"all": [{"not": {"referrer_domain": "nowhere.example"}}, {"not": {"campaign": "none"}}]},
                    "support",
                    template="echo.html",
                ),
                Variant("any-source", {"referrer": list(always)}, "support", template="echo.html"),
            )
        ),
        "device": Slot(
            variants=(Variant("any-device", {"device": ["mobile", "tablet", "desktop"]}, "support", html="<p>d</p>"),)
        ),
        "reminder": Slot(variants=(Variant("back", {"returning": True}, "recognize", html="<p>Welcome back</p>"),)),
    }
    return Config(
        site=SiteSettings(languages=("en", "de", "fr"), templates_dir="."),
        routes=(
            Route("/", slots=tuple(slots), shared_links_standard=False),
            Route("/page/{name}", slots=("hero",), shared_links_standard=False),
        ),
        slots=slots,
        location=LocationSettings(source="header", provider="cloudflare", allow_precise=True),
        limits=Limits(max_slots_per_page=10),
        base_dir=templates,
        secret_keys=(SECRET,),
    )


PAGES = {case["id"]: case for case in CORPUS["pages"]}


def page_bytes(case: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    return as_bytes(case["before"]), as_bytes(case["inner"]), as_bytes(case["after"])


def minimal_app(templates: Path) -> ASGIApp:
    async def home(request: Request) -> Response:
        return Response(MINIMAL_PAGE, media_type="text/html")

    async def page(request: Request) -> Response:
        body = b"".join(page_bytes(PAGES[request.path_params["name"]]))
        size = int(request.query_params.get("chunk", "0"))
        if not size:
            return Response(body, media_type="text/html")

        async def chunks() -> Any:
            for start in range(0, len(body), size):
                yield body[start : start + size]

        return StreamingResponse(chunks(), media_type="text/html")

    app = Starlette(
        routes=[StarletteRoute("/", home), StarletteRoute("/page/{name}", page), StarletteRoute("/plain", home)]
    )
    return PersonalizeMiddleware(app, config=minimal_config(templates))


@pytest.fixture(scope="module")
def minimal(tmp_path_factory: pytest.TempPathFactory) -> ASGIApp:
    templates = tmp_path_factory.mktemp("templates")
    (templates / "echo.html").write_text(ECHO_TEMPLATE, encoding="utf-8")
    return minimal_app(templates)


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", SECRET)
    monkeypatch.syspath_prepend(str(SHOP.parent.parent))
    from examples.shop.app import app

    return app


@pytest.fixture(params=["shop", "minimal"])
def app(request: pytest.FixtureRequest) -> ASGIApp:
    target: ASGIApp = request.getfixturevalue(request.param)
    return target


# --- calling an app with raw bytes -----------------------------------------------------------------


@dataclass
class Result:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name]


def call(
    app: ASGIApp,
    path: str = "/",
    *,
    method: str = "GET",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> Result:
    raw = list(headers or [])
    if not any(name.lower() == b"host" for name, _ in raw):
        raw.append((b"host", b"testserver"))
    if method == "POST":
        raw.append((b"content-type", b"application/x-www-form-urlencoded"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": quote(path).encode(),
        "query_string": query,
        "root_path": "",
        "headers": raw,
        "client": CLIENT,
        "server": ("testserver", 80),
    }
    requests = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        if requests:
            return requests.pop()
        await asyncio.sleep(3600)  # the client stays connected until the response is complete
        return {"type": "http.disconnect"}  # pragma: no cover

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # an exception here is what a server turns into a 500
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body", False)
    return Result(start["status"], list(start.get("headers", [])), content)


def assert_nothing_executes(result: Result, absent: list[bytes]) -> None:
    # JSON (the why page for `Accept: application/json`) is data for scripts, never rendered as a page.
    is_json = result.header(b"content-type") == [b"application/json"]
    if is_json:
        json.loads(result.body)
    for payload in absent:
        assert is_json or payload not in result.body, f"{payload!r} in the body"
        for name, value in result.headers:
            if name.lower() != b"location":  # a redirect target is a URL the browser encodes, never markup
                assert payload not in value, f"{payload!r} in the {name!r} header"


def assert_sane_page(result: Result, app_name: str) -> None:
    if app_name == "minimal":
        assert result.body.startswith(MINIMAL_PAGE[: MINIMAL_PAGE.index(b"<section")])
        assert result.body.endswith(b"</body></html>")
    else:
        assert result.body.lower().startswith(b"<!doctype html>")
        assert result.body.rstrip().endswith(b"</html>")


# --- every payload in every carrier ----------------------------------------------------------------


def fill(template: str, payload: bytes) -> bytes:
    encoded = quote(payload, safe="").encode("ascii")
    return template.encode("utf-8").replace(b"{p}", payload).replace(b"{q}", encoded)


CARRIER_CASES = [
    pytest.param(carrier, payload, id=f"{carrier['id']}-{payload['id']}")
    for carrier in CORPUS["carriers"]
    for payload in CORPUS["payloads"]
]


@pytest.mark.parametrize(("carrier", "payload"), CARRIER_CASES)
def test_payload_in_a_request_value_is_never_echoed_as_markup(
    app: ASGIApp, request: pytest.FixtureRequest, carrier: dict[str, Any], payload: dict[str, Any]
) -> None:
    value = as_bytes(payload["value"])
    headers = [(b"accept-language", b"de"), (b"cf-ipcountry", b"AT")]
    headers += [(as_bytes(name), as_bytes(extra)) for name, extra in carrier.get("with", [])]
    if "header" in carrier:
        name = carrier["header"].encode()
        headers = [(key, val) for key, val in headers if key != name]
        headers.append((name, fill(carrier["template"], value)))
    method = carrier.get("method", "GET")
    body = fill(carrier["form"], value) if "form" in carrier else b""
    status = carrier.get("status", 200)
    set_cookie = carrier.get("set_cookie", False)
    if len(body) > MAX_FORM_BYTES:
        status, set_cookie = 413, False
    result = call(
        app,
        carrier.get("path", "/"),
        method=method,
        query=fill(carrier.get("query", ""), value),
        headers=headers,
        body=body,
    )

    assert result.status == status
    assert_nothing_executes(result, [as_bytes(text) for text in payload["absent"]])
    assert bool(result.header(b"set-cookie")) == set_cookie
    for location in result.header(b"location"):
        assert location.startswith(b"/") and not location.startswith((b"//", b"/\\"))
        assert not any(byte < 0x20 for byte in location)
    if status == 200 and carrier.get("path", "/") == "/":
        assert_sane_page(result, request.node.callspec.params["app"])


def test_the_corpus_reaches_the_minimal_apps_badges_and_templates(minimal: ASGIApp) -> None:
    # The carriers are only worth something if the values they carry are shown somewhere.
    query = b"utm_campaign=" + quote("<b>spring</b>").encode()  # a campaign keeps letters, digits and " _.-"
    headers = [(b"accept-language", b"de"), (b"cf-ipcountry", b"AT"), (b"cf-ipcity", b"<i>Wien</i>")]
    result = call(minimal, "/", query=query, headers=headers)
    assert result.status == 200
    assert GERMAN_VARIANT in result.body
    assert b"&lt;i&gt;Wien&lt;/i&gt;" in result.body  # the city, in the place badge
    assert b"<p>de AT campaign bspringb " in result.body  # the echo template
    assert b"data-personalize-banner" in result.body
    assert not result.header(b"set-cookie")


# --- hostile requests ------------------------------------------------------------------------------


def signed_cookie(spec: dict[str, Any]) -> bytes:
    serializer = URLSafeTimedSerializer(spec.get("key", SECRET), salt=spec.get("salt", "edge-personalize.consent"))
    value = serializer.dumps(spec["data"])
    if spec.get("mutate") == "truncate":
        value = value[: len(value) // 2]
    elif spec.get("mutate") == "flip":
        # Not the last character: some of its bits are base64 padding, which decoding ignores.
        value = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
    return f"{spec.get('name', 'ep_consent')}={value}".encode()


REQUEST_CASES = [pytest.param(case, id=case["id"]) for case in CORPUS["requests"]]
GENERIC_PAYLOADS = [b"<script>alert(", b"<img src=x", b"<svg/onload", b"<b>"]


@pytest.mark.parametrize("case", REQUEST_CASES)
def test_hostile_request_gets_the_intended_status_and_no_cookie(
    app: ASGIApp, request: pytest.FixtureRequest, case: dict[str, Any]
) -> None:
    headers = [(as_bytes(name), as_bytes(value)) for name, value in case.get("headers", [])]
    headers *= case.get("repeat_headers", 1)
    if "signed_cookie" in case:
        headers.append((b"cookie", signed_cookie(case["signed_cookie"])))
    path = case.get("path", "/")
    result = call(
        app,
        path,
        method=case.get("method", "GET"),
        query=as_bytes(case.get("query", "")),
        headers=headers,
        body=as_bytes(case.get("form", "")),
    )

    assert result.status == case.get("status", 200)
    assert bool(result.header(b"set-cookie")) == case.get("set_cookie", False)
    assert_nothing_executes(result, GENERIC_PAYLOADS)
    if result.status == 200 and path == "/":
        assert_sane_page(result, request.node.callspec.params["app"])


def test_a_tampered_cookie_counts_as_no_choice(minimal: ASGIApp) -> None:
    # The banner asks again, and nothing that needs consent is shown.
    spec = {"data": {"c": "g", "v": "1", "f": "2020-01-01"}, "mutate": "flip"}
    tampered = call(minimal, "/", headers=[(b"cookie", signed_cookie(spec))])
    assert b"data-personalize-banner" in tampered.body and b"Welcome back" not in tampered.body
    spec.pop("mutate")
    intact = call(minimal, "/", headers=[(b"cookie", signed_cookie(spec))])
    assert b"data-personalize-banner" not in intact.body and b"Welcome back" in intact.body


def test_signed_cookie_values_are_never_shown_unless_they_are_valid(minimal: ASGIApp) -> None:
    data = {"c": "g", "v": "1", "f": "2020-01-01", "l": "<script>", "k": "<b>"}
    result = call(minimal, "/", headers=[(b"cookie", signed_cookie({"data": data})), (b"cf-ipcountry", b"AT")])
    assert result.status == 200
    assert b"Welcome back" in result.body
    assert b"<script>" not in result.body and b"<b>" not in result.body
    assert b"Austria" in result.body  # the header's country, not the cookie's bogus correction


# --- hostile pages ---------------------------------------------------------------------------------

PAGE_CASES = [pytest.param(case, id=case["id"]) for case in CORPUS["pages"]]


@pytest.mark.parametrize("chunk", [0, 4099], ids=["one-message", "streamed"])
@pytest.mark.parametrize("case", PAGE_CASES)
def test_hostile_markup_in_a_page_keeps_the_page(minimal: ASGIApp, case: dict[str, Any], chunk: int) -> None:
    before, inner, after = page_bytes(case)
    page = before + inner + after
    result = call(
        minimal,
        f"/page/{case['id']}",
        query=f"chunk={chunk}".encode(),
        headers=[(b"accept-language", b"de"), (b"sec-gpc", b"1")],  # a refusal: no consent banner
    )
    assert result.status == 200
    assert not result.header(b"set-cookie")
    if case["expect"] == "unchanged":
        assert result.body == page
    elif case["expect"] == "replaced":
        assert result.body.startswith(before + GERMAN_VARIANT)
        assert result.body.endswith(b"</details>" + after)
        assert inner not in result.body
    else:
        assert 1 <= result.body.count(GERMAN_VARIANT) <= 10  # the comfort budget of the minimal app
        assert result.body.startswith(before) and result.body.endswith(after)


@pytest.mark.parametrize("case", PAGE_CASES)
def test_hostile_markup_is_byte_for_byte_without_personalization(minimal: ASGIApp, case: dict[str, Any]) -> None:
    result = call(minimal, f"/page/{case['id']}", query=b"personalize=off", headers=[(b"accept-language", b"de")])
    assert result.body == b"".join(page_bytes(case))


def test_slot_names_from_the_page_never_reach_the_output_or_headers(minimal: ASGIApp) -> None:
    result = call(minimal, "/page/slot-name-angle-brackets", headers=[(b"accept-language", b"de")])
    assert [value for name, value in result.headers if b"<script>" in value] == []
    assert result.body.count(b"<script>alert(1)</script>") == 1  # the page's own attribute, untouched


@pytest.mark.parametrize("path", ["/", "/products", "/products/1", "/products/999", "/help/returns", "/privacy"])
def test_every_shop_page_survives_every_hostile_header_at_once(shop: ASGIApp, path: str) -> None:
    script = b"<script>alert(1)</script>"
    headers = [
        (b"accept-language", b"de;q=" + script),
        (b"cf-ipcountry", script),
        (b"cf-region-code", script),
        (b"cf-ipcity", script),
        (b"referer", b"https://www.google.com/" + script),
        (b"user-agent", script + b"\x00\xff"),
        (b"sec-ch-ua-mobile", script),
        (b"host", script),
        (b"x-forwarded-for", script),
        (b"cookie", b"ep_consent=" + script),
        (b"sec-gpc", script),
    ]
    query = b"utm_campaign=" + quote(script).encode() + b"&utm_source=" + script
    result = call(shop, path, query=query, headers=headers)
    assert result.status == (404 if path == "/products/999" else 200)
    assert_nothing_executes(result, [script])
    assert not result.header(b"set-cookie")


@pytest.mark.parametrize(
    "next_path",
    [
        pytest.param("/produkte/\u65e5\u672c", id="cjk"),
        pytest.param("/caf\u00e9", id="latin1"),
    ],
)
def test_consent_from_a_page_with_a_non_ascii_path_goes_back_to_that_page(minimal: ASGIApp, next_path: str) -> None:
    # The banner's form posts the page's own path back as `next`, percent-encoded UTF-8 as browsers send it.
    body = b"choice=accept&next=" + quote(next_path).encode()
    result = call(minimal, "/_personalize/consent", method="POST", body=body)
    assert result.status == 303
    assert result.header(b"location") == [quote(next_path).encode()]
