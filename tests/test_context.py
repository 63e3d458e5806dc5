from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from edge_personalize import Config, LocationSettings, PersonalizeMiddleware, Route, Slot, Variant
from edge_personalize.context import SignalReaders, VisitorContext
from tests.conftest import DATA, PAGE, make_config

GEOIP_CITY = DATA / "geoip" / "GeoLite2-City-Test.mmdb"
CHROME_DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def slot(**when: Any) -> dict[str, Slot]:
    return {"hero": Slot(variants=(Variant(name="v", when=when, html="<h1>Personal</h1>", purpose="support"),))}


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": PAGE.encode()})


def request(config: Config, headers: list[tuple[bytes, bytes]], client: str = "127.0.0.1", query: bytes = b"") -> Any:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": query,
        "headers": headers,
        "client": (client, 40000),
        "server": ("shop.example", 443),
        "scheme": "https",
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(PersonalizeMiddleware(_app, config=config)(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body.decode("utf-8", "replace")


def test_signals_are_read_only_when_a_rule_needs_them() -> None:
    readers = SignalReaders(make_config())
    scope = {"type": "http", "headers": [(b"accept-language", b"de"), (b"user-agent", b"x")], "query_string": b""}
    ctx = VisitorContext(readers, scope)
    assert ctx.language == "de"
    assert ctx.read == {"language"}


def test_country_from_the_cdn_header_varies_on_that_header() -> None:
    config = make_config(slots=slot(country="AT"), location=LocationSettings(source="header", provider="cloudflare"))
    _, headers, body = request(config, [(b"cf-ipcountry", b"AT")])
    assert "<h1>Personal</h1>" in body
    assert "Austria, according to the location header of this site&#39;s network (CF-IPCountry)" in body
    assert headers["vary"].lower() == "accept-language, cf-ipcountry"  # the badge speaks the page language
    assert "cache-control" not in headers
    assert "<h1>Personal</h1>" not in request(config, [(b"cf-ipcountry", b"XX")])[2]


def test_country_from_geoip_makes_the_response_private() -> None:
    location = LocationSettings(source="geoip", geoip_database=str(GEOIP_CITY))
    config = make_config(slots=slot(country="GB"), location=location)
    _, headers, body = request(config, [], client="81.2.69.142")
    assert "<h1>Personal</h1>" in body
    assert "location database" in body
    assert headers["cache-control"] == "private"
    assert "<h1>Personal</h1>" not in request(config, [], client="127.0.0.1")[2]


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    location = LocationSettings(source="geoip", geoip_database=str(GEOIP_CITY), trusted_proxies=("10.0.0.0/8",))
    config = make_config(slots=slot(country="SE"), location=location)
    forwarded = [(b"x-forwarded-for", b"89.160.20.112")]
    assert "<h1>Personal</h1>" in request(config, forwarded, client="10.1.2.3")[2]
    assert "<h1>Personal</h1>" not in request(config, forwarded, client="81.2.69.142")[2]


def test_missing_geoip_database_is_a_startup_error(tmp_path: Path) -> None:
    from edge_personalize import ConfigError

    config = make_config(location=LocationSettings(source="geoip", geoip_database=str(tmp_path / "nope.mmdb")))
    with pytest.raises(ConfigError, match=r"location\.geoip_database"):
        PersonalizeMiddleware(_app, config=config)


def test_device_rules_make_the_response_private() -> None:
    config = make_config(slots=slot(device="desktop"))
    _, headers, body = request(config, [(b"user-agent", CHROME_DESKTOP.encode())])
    assert "<h1>Personal</h1>" in body and "You are using a computer." in body
    assert headers["cache-control"] == "private"


def test_crawlers_always_get_the_standard_page_without_a_badge() -> None:
    config = make_config(slots=slot(language="de"))
    status, _, body = request(config, [(b"accept-language", b"de"), (b"user-agent", GOOGLEBOT.encode())])
    assert status == 200
    assert body == PAGE


def test_campaign_alone_keeps_the_page_cacheable() -> None:
    routes = (Route("/", slots=("hero",), shared_links_standard=False),)
    config = make_config(slots=slot(campaign="spring"), routes=routes)
    _, headers, body = request(config, [], query=b"utm_source=news&utm_campaign=spring")
    assert "<h1>Personal</h1>" in body
    assert headers["vary"] == "Accept-Language" and "cache-control" not in headers


XSS = b"<script>alert(1)</script>"
HOSTILE_VALUES = [
    XSS,
    b'"><img src=x onerror=alert(1)>',
    b"a" * 65536,
    b"\xff\xfe\xc3\x28 invalid utf-8",
    b"de\x00<script>",
    b",".join([b"de;q=0.5"] * 5000),
]
HEADERS = [b"accept-language", b"cf-ipcountry", b"cf-region-code", b"cf-ipcity", b"referer", b"user-agent",
           b"sec-ch-ua-mobile", b"host", b"x-forwarded-for"]  # fmt: skip


@pytest.mark.parametrize(
    "value", HOSTILE_VALUES, ids=["script", "attr-break", "64k", "invalid-utf8", "nul", "long-list"]
)
def test_hostile_headers_give_the_default_or_an_escaped_explanation_never_an_error(value: bytes) -> None:
    location = LocationSettings(source="header", provider="cloudflare", allow_precise=True)
    variants = (
        Variant(
            name="a",
            when={"referrer": ["search", "other", "direct"], "device": "desktop"},
            html="<p>A</p>",
            purpose="support",
        ),
        Variant(name="b", when={"any": [{"city": "x"}, {"region": "AT-9"}]}, html="<p>B</p>", purpose="support"),
        Variant(name="c", when={"not": {"language": "de"}, "country": "AT"}, html="<p>C</p>", purpose="support"),
        Variant(name="d", when={"referrer_domain": "example.com", "campaign": "x"}, html="<p>D</p>", purpose="support"),
    )
    config = make_config(slots={"hero": Slot(variants=variants)}, location=location)
    for query in (b"", b"utm_campaign=%3Cscript%3E&utm_source=" + value[:100].replace(b"&", b"")):
        status, _, body = request(config, [(name, value) for name in HEADERS], query=query)
        assert status == 200
        assert "<script>alert" not in body
        assert "onerror=alert" not in body.replace("&#34;&gt;&lt;img src=x onerror", "")
        assert body.startswith("<!doctype html><html><body><p>intro</p>")


def test_a_hostile_city_reaches_the_explanation_only_escaped() -> None:
    location = LocationSettings(source="header", provider="cloudflare", allow_precise=True)
    config = make_config(slots=slot(all=[{"country": "AT"}, {"not": {"city": "Wien"}}]), location=location)
    city = b"<script>alert(1)</script>"
    _, _, body = request(config, [(b"cf-ipcountry", b"AT"), (b"cf-ipcity", city)])
    assert "<h1>Personal</h1>" in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert" not in body
