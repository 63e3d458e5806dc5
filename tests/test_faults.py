"""Faults around the middleware: the app, the client, templates, GeoIP, Redis and the switch file failing.

In every case the page is served (the default content) or the app's own error reaches the server
unchanged, nothing of ours crashes, and a failure of ours is one clear warning line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_personalize import (
    Config,
    ConfigError,
    LocationSettings,
    OwnerSettings,
    PersonalizeMiddleware,
    SiteSettings,
    Slot,
    Variant,
)
from edge_personalize.switches import SwitchStoreError
from tests.conftest import DATA, PAGE, make_config
from tests.redis_server import REDIS_SERVER, RedisServer

GERMAN = {"accept-language": "de"}
VARIANT = "<h1>Willkommen</h1>"
GEOIP_CITY = DATA / "geoip" / "GeoLite2-City-Test.mmdb"
BRITISH_IP = "81.2.69.142"  # GB in the MaxMind test database


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name.startswith("edge_personalize")]


def assert_one_clear_warning(caplog: pytest.LogCaptureFixture, *words: str) -> None:
    (warning,) = warnings_in(caplog)
    message = warning.getMessage()
    assert "\n" not in message
    for word in words:
        assert word in message


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


async def call(app: ASGIApp, scope: dict[str, Any], receive: Receive | None = None) -> list[Message]:
    sent: list[Message] = []

    async def default_receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await app(scope, receive or default_receive, send)
    finally:
        scope["sent"] = sent
    return sent


def http_scope(headers: dict[str, str] | None = None, client: str = "127.0.0.1", spec: str = "2.3") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in (headers or GERMAN).items()],
        "client": (client, 50000),
        "server": ("testserver", 80),
    }


def body_of(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def starlette_app(endpoint: Callable[[Request], Any], config: Config | None = None) -> Starlette:
    middleware = [Middleware(PersonalizeMiddleware, config=config)] if config is not None else []
    return Starlette(routes=[StarletteRoute("/", endpoint)], middleware=middleware)


# --- the app fails -----------------------------------------------------------------------------------


async def failing_endpoint(request: Request) -> Response:
    raise RuntimeError("the app's own failure")


def test_app_error_before_the_response_starts_is_the_apps_own_500(caplog: pytest.LogCaptureFixture) -> None:
    with_us = TestClient(starlette_app(failing_endpoint, make_config()), raise_server_exceptions=False)
    without_us = TestClient(starlette_app(failing_endpoint), raise_server_exceptions=False)
    ours_response = with_us.get("/", headers=GERMAN)
    theirs = without_us.get("/", headers=GERMAN)
    assert ours_response.status_code == 500
    assert (ours_response.status_code, ours_response.headers, ours_response.content) == (
        theirs.status_code,
        theirs.headers,
        theirs.content,
    )
    assert ours(caplog) == []


def test_app_error_before_the_response_starts_propagates_unchanged() -> None:
    client = TestClient(starlette_app(failing_endpoint, make_config()))
    with pytest.raises(RuntimeError, match="the app's own failure"):
        client.get("/", headers=GERMAN)


def mid_body_app(first_chunk: bytes, error: Exception) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": first_chunk, "more_body": True})
        raise error

    return app


@pytest.mark.parametrize(
    "first_chunk",
    [PAGE.encode()[:20], PAGE.encode()[:-14], PAGE.encode()[: PAGE.index("<h1>")]],
    ids=["before-the-slot", "after-the-slot", "inside-the-slot"],
)
def test_app_error_mid_body_propagates_as_it_would_without_us(
    caplog: pytest.LogCaptureFixture, first_chunk: bytes
) -> None:
    error = RuntimeError("the app failed mid-body")
    scope = http_scope()
    with pytest.raises(RuntimeError) as caught:
        asyncio.run(call(PersonalizeMiddleware(mid_body_app(first_chunk, error), config=make_config()), scope))
    assert caught.value is error
    sent = scope["sent"]
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert all(m.get("more_body") for m in sent[1:])  # nothing claims the body is complete
    assert PAGE.encode().startswith(body_of(sent)[:20]) or body_of(sent) == b""
    assert ours(caplog) == []


def test_app_error_mid_body_behind_starlettes_error_middleware_is_the_apps_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def endpoint(request: Request) -> Response:
        async def chunks() -> Any:
            yield PAGE[:40]
            raise RuntimeError("the app failed mid-stream")

        return StreamingResponse(chunks(), media_type="text/html")

    client = TestClient(starlette_app(endpoint, make_config()))
    with pytest.raises(RuntimeError, match="the app failed mid-stream"):
        client.get("/", headers=GERMAN)
    assert ours(caplog) == []


# --- the client goes away ----------------------------------------------------------------------------


def endless_page(closed: list[bool]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        async def chunks() -> Any:
            try:
                yield "<!doctype html><html><body>"
                for _ in range(100_000):
                    yield '<section data-personalize="hero"><h1>Welcome</h1></section>'
                    await asyncio.sleep(0)
                yield "</body></html>"
            finally:
                closed.append(True)

        return StreamingResponse(chunks(), media_type="text/html")

    return endpoint


def test_client_disconnect_mid_stream_ends_the_response_quietly(caplog: pytest.LogCaptureFixture) -> None:
    closed: list[bool] = []
    app = starlette_app(endless_page(closed), make_config())
    requests = [{"type": "http.request", "body": b""}]

    async def receive() -> Message:
        if requests:
            return requests.pop()
        await asyncio.sleep(0.05)  # the visitor reads a little, then closes the tab
        return {"type": "http.disconnect"}

    scope = http_scope()
    asyncio.run(asyncio.wait_for(call(app, scope, receive), timeout=10))
    sent = scope["sent"]
    assert sent[0]["type"] == "http.response.start"
    assert b"Willkommen" in body_of(sent)
    assert closed == [True]
    assert ours(caplog) == [] and warnings_in(caplog) == []


def test_send_failing_after_a_disconnect_propagates_as_it_would_without_us(caplog: pytest.LogCaptureFixture) -> None:
    def run(with_us: bool) -> type[BaseException]:
        closed: list[bool] = []
        app = starlette_app(endless_page(closed), make_config() if with_us else None)
        sent: list[Message] = []

        async def send(message: Message) -> None:
            if len(sent) >= 3:
                raise OSError("connection reset by peer")
            sent.append(message)

        async def receive() -> Message:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}  # pragma: no cover

        with pytest.raises(BaseException) as caught:
            asyncio.run(app(http_scope(spec="2.4"), receive, send))
        assert closed == [True]
        return caught.type

    assert run(with_us=True) is run(with_us=False) is ClientDisconnect
    assert ours(caplog) == []


# --- a variant fails ---------------------------------------------------------------------------------


def template_config(tmp_path: Path, template: str = "hero.html", **overrides: Any) -> Config:
    (tmp_path / "hero.html").write_text("<h1>Hallo {{ visitor.language }}</h1>", encoding="utf-8")
    slots = {"hero": Slot(variants=(Variant("german", {"language": "de"}, "support", template=template),))}
    site = SiteSettings(languages=("en", "de"), templates_dir=".")
    return make_config(slots=slots, site=site, base_dir=tmp_path, **overrides)


def test_variant_template_deleted_after_start_up_serves_the_default_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = TestClient(starlette_app(lambda request: HTMLResponse(PAGE), template_config(tmp_path)))
    client.get("/", headers={"accept-language": "en"})  # starts the app without rendering the variant
    (tmp_path / "hero.html").unlink()
    response = client.get("/", headers=GERMAN)
    assert response.status_code == 200
    assert response.text == PAGE
    assert_one_clear_warning(caplog, "'hero'", "'german'", "default content served", "hero.html")


def test_markup_too_costly_to_tokenize_is_served_as_the_app_made_it(caplog: pytest.LogCaptureFixture) -> None:
    # Thousands of tags that are read far before they fail (their `>` only inside quoted values).
    page = PAGE + '<a b=">"' * 12_000
    response = TestClient(starlette_app(lambda request: HTMLResponse(page), make_config())).get("/", headers=GERMAN)
    assert response.status_code == 200
    assert response.text == page
    assert_one_clear_warning(caplog, "rewriting stopped", "MarkupTooCostly")


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("{{ 1 // 0 }}", "ZeroDivisionError"),
        ("{{ visitor.language.missing() }}", "UndefinedError"),
        ("{% include 'nowhere.html' %}", "TemplateNotFound"),
        ("{{ visitor.country.upper() }}", "UndefinedError"),  # no country: None has no upper()
        ("{% for x in range(10**8) %}{% if loop.index > 3 %}{{ x.boom() }}{% endif %}{% endfor %}", "UndefinedError"),
    ],
    ids=["zero-division", "undefined-call", "missing-include", "none-attribute", "late-failure"],
)
def test_variant_template_raising_serves_the_default_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, source: str, error: str
) -> None:
    (tmp_path / "broken.html").write_text(source, encoding="utf-8")
    config = template_config(tmp_path, template="broken.html")
    response = TestClient(starlette_app(lambda request: HTMLResponse(PAGE), config)).get("/", headers=GERMAN)
    assert response.status_code == 200
    assert response.text == PAGE
    assert "set-cookie" not in response.headers
    assert_one_clear_warning(caplog, "'hero'", "default content served", error)


def test_site_badge_override_raising_serves_the_default_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "badge.html").write_text("{{ facts[99].text }}", encoding="utf-8")
    response = TestClient(starlette_app(lambda request: HTMLResponse(PAGE), template_config(tmp_path))).get(
        "/", headers=GERMAN
    )
    assert response.status_code == 200
    assert response.text == PAGE
    assert_one_clear_warning(caplog, "'hero'", "default content served")


def test_a_failing_variant_leaves_the_other_slots_personalized(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "broken.html").write_text("{{ 1 // 0 }}", encoding="utf-8")
    slots = {
        "hero": Slot(variants=(Variant("broken", {"language": "de"}, "support", template="broken.html"),)),
        "side": Slot(variants=(Variant("fine", {"language": "de"}, "support", html=VARIANT),)),
    }
    config = template_config(tmp_path)
    config = replace(config, routes=(replace(config.routes[0], slots=("hero", "side")),), slots=slots)
    page = PAGE + '<aside data-personalize="side">x</aside>'
    response = TestClient(starlette_app(lambda request: HTMLResponse(page), config)).get("/", headers=GERMAN)
    assert response.text.startswith(PAGE)
    assert VARIANT in response.text[len(PAGE) :]
    assert_one_clear_warning(caplog, "'hero'", "'broken'")


# --- GeoIP -------------------------------------------------------------------------------------------


def geoip_config(database: Path | str) -> Config:
    slots = {"hero": Slot(variants=(Variant("uk", {"country": "GB"}, "support", html=VARIANT),))}
    return make_config(slots=slots, location=LocationSettings(source="geoip", geoip_database=str(database)))


def damaged_copy(tmp_path: Path, damage: str) -> Path:
    data = GEOIP_CITY.read_bytes()
    target = tmp_path / "GeoLite2-City.mmdb"
    if damage == "empty":
        data = b""
    elif damage == "first-kilobyte":
        data = data[:1024]
    elif damage == "half":
        data = data[: len(data) // 2]
    elif damage == "last-bytes-cut":
        data = data[:-64]
    elif damage == "not-a-database":
        data = b"<html>404 Not Found</html>" * 100
    target.write_bytes(data)
    return target


def test_missing_geoip_database_is_a_clear_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        PersonalizeMiddleware(HTMLResponse(PAGE), config=geoip_config(tmp_path / "GeoLite2-City.mmdb"))
    message = str(caught.value)
    assert "location.geoip_database" in message and "GeoLite2-City.mmdb" in message
    assert "not found" in message and "download" in message
    assert "\n" not in message


@pytest.mark.parametrize("damage", ["empty", "first-kilobyte", "half", "last-bytes-cut", "not-a-database"])
def test_truncated_geoip_database_is_a_clear_start_up_error(tmp_path: Path, damage: str) -> None:
    database = damaged_copy(tmp_path, damage)
    with pytest.raises(ConfigError) as caught:
        PersonalizeMiddleware(HTMLResponse(PAGE), config=geoip_config(database))
    message = str(caught.value)
    assert "location.geoip_database" in message and str(database) in message
    assert "not a readable MaxMind DB file" in message and "download" in message


def test_geoip_directory_instead_of_a_file_is_a_clear_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"location\.geoip_database: .*not found; download"):
        PersonalizeMiddleware(HTMLResponse(PAGE), config=geoip_config(tmp_path))


def geoip_page(middleware: PersonalizeMiddleware, client: str = BRITISH_IP) -> tuple[int, bytes]:
    scope = http_scope({}, client=client)
    messages = asyncio.run(call(middleware, scope))
    return messages[0]["status"], body_of(messages)


def closed_geoip_middleware() -> PersonalizeMiddleware:
    middleware = PersonalizeMiddleware(HTMLResponse(PAGE), config=geoip_config(GEOIP_CITY))
    # Another British address: the response made for it is kept, and must not answer the checks.
    assert VARIANT.encode() in geoip_page(middleware, client="81.2.69.160")[1]
    assert middleware.readers.geoip is not None
    middleware.readers.geoip.close()  # every lookup now raises inside the reader
    return middleware


def test_geoip_lookup_failing_at_runtime_means_unknown_location() -> None:
    middleware = closed_geoip_middleware()
    for _ in range(3):
        assert geoip_page(middleware) == (200, PAGE.encode())


def test_geoip_lookup_failing_at_runtime_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    middleware = closed_geoip_middleware()
    caplog.clear()
    geoip_page(middleware)
    assert_one_clear_warning(caplog, "GeoLite2-City-Test.mmdb")


# --- the switch stores -------------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("needs the redis-server binary (Debian package redis-server)")
    with RedisServer(tmp_path) as server:
        yield server


def page_text(middleware: PersonalizeMiddleware) -> str:
    messages = asyncio.run(call(middleware, http_scope()))
    assert messages[0]["status"] == 200
    return body_of(messages).decode()


def test_redis_going_away_and_coming_back_while_serving_pages(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with redis.Redis.from_url(redis_server.url) as admin:
        admin.hset("edge-personalize:switches", "slot:hero", "0")
    middleware = PersonalizeMiddleware(
        HTMLResponse(PAGE), config=make_config(owner=OwnerSettings(redis_url=redis_server.url))
    )
    try:
        assert page_text(middleware) == PAGE  # the owner switched the hero off

        redis_server.stop()
        eventually(lambda: len(warnings_in(caplog)) == 1)
        for _ in range(5):
            started = time.monotonic()
            assert page_text(middleware) == PAGE  # the last known switches, served without waiting on Redis
            assert time.monotonic() - started < 0.5
        time.sleep(1.0)  # the listener retries meanwhile
        assert_one_clear_warning(caplog, "unreachable", "keeping the last known switches")

        redis_server.start()  # an empty server: the hero is on again
        eventually(lambda: VARIANT in page_text(middleware))
        assert any("reachable again" in record.getMessage() for record in ours(caplog))
        with redis.Redis.from_url(redis_server.url) as admin:
            admin.hset("edge-personalize:switches", "slot:hero", "0")
            admin.publish("edge-personalize:switches", "slot:hero")
        eventually(lambda: page_text(middleware) == PAGE)
        assert len(warnings_in(caplog)) == 1
    finally:
        middleware.switches.close()


@pytest.mark.parametrize(
    "broken",
    [b"[slots\nhero = ", b"[slots]\nhero = 'off'\n", b"[slotz]\nhero = false\n", b"\xff\xfe\x00[slots]"],
    ids=["not-toml", "not-a-flag", "unknown-table", "binary"],
)
def test_switch_file_edited_to_something_invalid_keeps_the_last_good_switches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, broken: bytes
) -> None:
    switches = tmp_path / "switches.toml"
    switches.write_text("[slots]\nhero = false\n", encoding="utf-8")
    config = make_config(owner=OwnerSettings(switches=str(switches)))
    client = TestClient(starlette_app(lambda request: HTMLResponse(PAGE), config))
    assert client.get("/", headers=GERMAN).text == PAGE

    switches.write_bytes(broken)
    time.sleep(0.6)  # the file is checked at most twice a second
    for _ in range(3):
        response = client.get("/", headers=GERMAN)
        assert response.status_code == 200 and response.text == PAGE  # still switched off
    time.sleep(0.6)
    assert client.get("/", headers=GERMAN).text == PAGE
    assert_one_clear_warning(caplog, str(switches), "keeping the last good switches")

    switches.write_text("[slots]\nhero = true\n", encoding="utf-8")
    time.sleep(0.6)
    assert VARIANT in client.get("/", headers=GERMAN).text
    assert len(warnings_in(caplog)) == 1


def test_switch_file_deleted_while_running_turns_everything_on_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A missing file is the documented "no overrides", not a failure.
    switches = tmp_path / "switches.toml"
    switches.write_text("site = false\n", encoding="utf-8")
    client = TestClient(
        starlette_app(lambda request: HTMLResponse(PAGE), make_config(owner=OwnerSettings(switches=str(switches))))
    )
    assert client.get("/", headers=GERMAN).text == PAGE
    switches.unlink()
    time.sleep(0.6)
    assert VARIANT in client.get("/", headers=GERMAN).text
    assert warnings_in(caplog) == []


def test_switch_file_invalid_at_start_up_is_a_start_up_error(tmp_path: Path) -> None:
    # Starting with everything on would silently undo what the owner switched off.
    switches = tmp_path / "switches.toml"
    switches.write_text("[slots\n", encoding="utf-8")
    with pytest.raises(SwitchStoreError, match=r"switches\.toml: not valid TOML"):
        PersonalizeMiddleware(HTMLResponse(PAGE), config=make_config(owner=OwnerSettings(switches=str(switches))))
