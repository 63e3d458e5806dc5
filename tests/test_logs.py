"""What the logs may hold: never the visitor's IP address, referrer URL or User-Agent; and the secret.

Every request goes straight to the ASGI app in-process with a real client address, so the only log
records are the ones the app, Starlette and the middleware write.
"""

from __future__ import annotations

import asyncio
import logging
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message

from edge_personalize import ConfigError, LocationSettings, PersonalizeMiddleware, SiteSettings, Slot, Variant
from edge_personalize.consent import COOKIE_NAME, SECURE_COOKIE_NAME
from tests.conftest import DATA, PAGE, SECRET, make_config

SHOP = Path(__file__).parent.parent / "examples" / "shop"
CLIENT_IP = "198.51.100.173"
FORWARDED_IP = "192.0.2.219"
GEOIP_IP = "81.2.69.142"  # in the MaxMind test database
REFERRER = "https://www.google.com/private-path-q7x9/search?q=secret-query-k4m2&token=tok-z8w1"
USER_AGENT = "Mozilla/5.0 (Linux; Android 14; Pixel 8) SnowflakeBrowser/7.31 Distinctive-UA-p5r8 Mobile Safari/537.36"
NEVER_LOGGED = [
    CLIENT_IP,
    FORWARDED_IP,
    GEOIP_IP,
    "private-path-q7x9",
    "secret-query-k4m2",
    "tok-z8w1",
    "SnowflakeBrowser",
    "Distinctive-UA-p5r8",
    SECRET,
]


def visitor_headers(client: str = CLIENT_IP, **extra: str) -> list[tuple[bytes, bytes]]:
    headers = {
        "host": "shop.example",
        "x-forwarded-for": f"{FORWARDED_IP}, {GEOIP_IP}",
        "referer": REFERRER,
        "user-agent": USER_AGENT,
        "accept-language": "de-AT,de;q=0.9",
        "cf-ipcountry": "AT",
        **extra,
    }
    return [(k.encode(), v.encode()) for k, v in headers.items()]


def request(
    app: ASGIApp,
    path: str,
    *,
    method: str = "GET",
    query: str = "",
    body: bytes = b"",
    client: str = CLIENT_IP,
    **headers: str,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    raw = visitor_headers(client, **headers)
    if method == "POST":
        raw.append((b"content-type", b"application/x-www-form-urlencoded"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": raw,
        "client": (client, 51515),
        "server": ("shop.example", 443),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body_out = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], list(sent[0]["headers"]), body_out


def everything_logged(record: logging.LogRecord) -> str:
    # The message, its parts, any traceback, and any extra attributes a handler might write out.
    parts = [record.getMessage(), str(record.msg), repr(record.args), logging.Formatter().format(record)]
    parts += [repr(value) for value in vars(record).values()]
    return "\n".join(parts)


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch) -> ASGIApp:
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", SECRET)
    monkeypatch.syspath_prepend(str(SHOP.parent.parent))
    from examples.shop.app import app

    return app


def failing_variant_app(tmp_path: Path) -> ASGIApp:
    (tmp_path / "broken.html").write_text("{{ visitor.referrer ~ visitor.device ~ (1 // 0) }}", encoding="utf-8")
    slots = {
        "hero": Slot(
            variants=(
                Variant(
                    "broken", {"all": [{"device": "mobile"}, {"referrer": "search"}]}, "support", template="broken.html"
                ),
            )
        )
    }
    config = make_config(slots=slots, site=SiteSettings(languages=("en", "de"), templates_dir="."), base_dir=tmp_path)
    app = Starlette(routes=[StarletteRoute("/", lambda r: HTMLResponse(PAGE))])
    return PersonalizeMiddleware(app, config=config)


def geoip_app() -> ASGIApp:
    slots = {"hero": Slot(variants=(Variant("uk", {"country": "GB"}, "support", html="<h1>Hello, UK</h1>"),))}
    location = LocationSettings(
        source="geoip",
        geoip_database=str(DATA / "geoip" / "GeoLite2-City-Test.mmdb"),
        trusted_proxies=("127.0.0.1/32", f"{CLIENT_IP}/32"),
    )
    app = Starlette(routes=[StarletteRoute("/", lambda r: HTMLResponse(PAGE))])
    return PersonalizeMiddleware(app, config=make_config(slots=slots, location=location))


def test_no_ip_referrer_or_user_agent_in_any_log_record(
    shop: ASGIApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for path in ("/", "/products", "/products/1", "/products/999", "/help/returns", "/privacy"):
        assert request(shop, path)[0] in (200, 404)
    assert request(shop, "/", query="utm_source=news&utm_campaign=spring")[0] == 200
    assert request(shop, "/_personalize/why", query="path=/&ref=search")[0] == 200
    assert request(shop, "/_personalize/why", query="path=/products/1", accept="application/json")[0] == 200
    assert request(shop, "/_personalize/policy.json")[0] == 200
    for choice in ("accept", "reject", "withdraw"):
        form = f"choice={choice}&next={quote('/products/1?from=' + REFERRER)}".encode()
        assert request(shop, "/_personalize/consent", method="POST", body=form)[0] == 303
    form = b"language=de&country=AT&next=/"
    assert request(shop, "/_personalize/correct", method="POST", body=form)[0] == 303
    assert request(shop, "/", cookie=f"{COOKIE_NAME}=tampered.{CLIENT_IP}.x; {SECURE_COOKIE_NAME}=..")[0] == 200
    assert request(shop, "/", **{"sec-gpc": "1"})[0] == 200
    failing = failing_variant_app(tmp_path)
    assert request(failing, "/", referer="https://www.google.com/private-path-q7x9?q=secret-query-k4m2")[0] == 200
    geoip = geoip_app()
    status, _, body = request(geoip, "/", client="127.0.0.1", **{"x-forwarded-for": GEOIP_IP})
    assert status == 200 and b"Hello, UK" in body
    assert request(geoip, "/", client=CLIENT_IP)[0] == 200

    logged = [everything_logged(record) for record in caplog.records]
    assert any("consent choice=accept" in text for text in logged)  # the proof of consent was logged ...
    assert any("default content served" in text for text in logged)  # ... and so was the failing variant
    for text in logged:
        for raw in NEVER_LOGGED:
            assert raw not in text


def test_the_middleware_refuses_to_start_without_a_secret() -> None:
    app = HTMLResponse(PAGE)
    with pytest.raises(ConfigError, match="EDGE_PERSONALIZE_SECRET is not set"):
        PersonalizeMiddleware(app, config=SHOP / "personalize.toml")
    with pytest.raises(ConfigError, match="EDGE_PERSONALIZE_SECRET is not set"):
        PersonalizeMiddleware(app, config=make_config(secret_keys=()))


@pytest.mark.parametrize("value", ["", "   ", ",", " , , ", "short"])
def test_an_empty_or_weak_secret_is_refused_too(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", value)
    with pytest.raises(ConfigError, match="EDGE_PERSONALIZE_SECRET"):
        PersonalizeMiddleware(HTMLResponse(PAGE), config=SHOP / "personalize.toml")


def consent_cookie(base_url: str) -> tuple[str, list[str]]:
    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    app = Starlette(routes=[StarletteRoute("/", page)])
    slots = {"hero": Slot(variants=(Variant("back", {"returning": True}, "recognize", html="<h1>Back</h1>"),))}
    client = TestClient(
        PersonalizeMiddleware(app, config=make_config(slots=slots)), base_url=base_url, follow_redirects=False
    )
    response = client.post("/_personalize/consent", data={"choice": "accept", "next": "/"})
    assert response.status_code == 303
    values = response.headers.get_list("set-cookie")
    stored = [value for value in values if "Max-Age=0" not in value]
    assert len(stored) == 1
    return stored[0], values


def attributes(set_cookie: str) -> tuple[str, set[str]]:
    name, _, rest = set_cookie.partition("=")
    return name, {part.strip().split("=")[0].lower() for part in rest.split(";")[1:]}


def test_consent_cookie_flags_on_http() -> None:
    stored, _ = consent_cookie("http://shop.example")
    name, flags = attributes(stored)
    assert name == COOKIE_NAME
    assert {"httponly", "path", "samesite", "max-age"} <= flags and "secure" not in flags and "domain" not in flags
    assert "SameSite=Lax" in stored and "Path=/" in stored


def test_consent_cookie_flags_on_https() -> None:
    stored, every = consent_cookie("https://shop.example")
    name, flags = attributes(stored)
    assert name == SECURE_COOKIE_NAME
    assert {"httponly", "secure", "path", "samesite"} <= flags and "domain" not in flags
    assert "SameSite=Lax" in stored and "Path=/" in stored
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(stored)
    assert cookie[SECURE_COOKIE_NAME]["path"] == "/"
    assert all("Secure" in value for value in every)  # the deletion of the http cookie too
