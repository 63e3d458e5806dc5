from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from edge_personalize import Config, ConfigError, PersonalizeMiddleware, Route, Slot, Variant
from tests.conftest import PAGE, make_config

GERMAN = {"accept-language": "de-DE,de;q=0.9,en;q=0.8"}


def client_for(response: Response | None = None, config: Config | None = None, **kwargs: Any) -> TestClient:
    async def endpoint(request: Request) -> Response:
        return response if response is not None else HTMLResponse(PAGE)

    app = Starlette(
        routes=[StarletteRoute("/", endpoint, methods=["GET", "HEAD", "POST"]), StarletteRoute("/other", endpoint)],
        middleware=[Middleware(PersonalizeMiddleware, config=config or make_config(**kwargs))],
    )
    return TestClient(app)


def test_variant_replaces_the_inner_html_and_adds_the_badge() -> None:
    response = client_for().get("/", headers=GERMAN)
    assert response.status_code == 200
    assert '<section data-personalize="hero"><h1>Willkommen</h1>' in response.text
    assert "data-personalize-badge" in response.text
    assert response.text.startswith("<!doctype html><html><body><p>intro</p>")
    assert response.text.endswith("</details></section></body></html>")


def test_default_content_is_byte_for_byte_when_no_variant_matches() -> None:
    response = client_for().get("/", headers={"accept-language": "fr"})
    assert response.text == PAGE
    assert "data-personalize-badge" not in response.text


def test_content_length_is_exact_for_a_rewritten_single_message_body() -> None:
    response = client_for().get("/", headers=GERMAN)
    assert response.headers["content-length"] == str(len(response.content))


def test_vary_is_added_on_a_personalized_route_even_for_the_default_content() -> None:
    response = client_for().get("/", headers={"accept-language": "fr"})
    assert response.headers["vary"] == "Accept-Language"


def test_vary_is_merged_never_overwritten_or_repeated() -> None:
    page = HTMLResponse(PAGE, headers={"vary": "Accept-Encoding, accept-language"})
    response = client_for(page).get("/", headers=GERMAN)
    assert response.headers["vary"] == "Accept-Encoding, accept-language"
    page = HTMLResponse(PAGE, headers={"vary": "Cookie"})
    assert client_for(page).get("/", headers=GERMAN).headers["vary"] == "Cookie, Accept-Language"


def test_strong_etag_is_replaced_by_a_weak_one_that_differs_per_variant_set() -> None:
    page = HTMLResponse(PAGE, headers={"etag": '"v1"'})
    client = client_for(page)
    german = client.get("/", headers=GERMAN).headers["etag"]
    french = client.get("/", headers={"accept-language": "fr"}).headers["etag"]
    assert german.startswith('W/"v1-') and german.endswith('"')
    assert french == '"v1"'  # nothing was replaced: the app's validator still describes the body
    assert client.get("/", headers=GERMAN).headers["etag"] == german


def test_weak_etag_stays_weak_and_names_the_variant_set() -> None:
    page = HTMLResponse(PAGE, headers={"etag": 'W/"v1"'})
    etag = client_for(page).get("/", headers=GERMAN).headers["etag"]
    assert etag.startswith('W/"v1-')


def test_cache_control_is_made_private_when_a_rule_reads_the_referrer() -> None:
    slots = {
        "hero": Slot(
            variants=(
                Variant(name="search", when={"referrer": "search"}, html="<h1>Found us?</h1>", purpose="support"),
            )
        )
    }
    page = HTMLResponse(PAGE, headers={"cache-control": "public, max-age=60, s-maxage=600"})
    response = client_for(page, slots=slots).get("/", headers={"referer": "https://www.google.com/"})
    assert "Found us?" in response.text
    assert response.headers["cache-control"] == "private, max-age=60"


def test_cache_control_stays_shared_when_only_accept_language_decides() -> None:
    page = HTMLResponse(PAGE, headers={"cache-control": "public, max-age=60"})
    response = client_for(page).get("/", headers=GERMAN)
    assert response.headers["cache-control"] == "public, max-age=60"
    assert response.headers["vary"] == "Accept-Language"


def test_shared_links_standard_makes_the_route_private_and_serves_the_standard_page_to_social_visits() -> None:
    client = client_for(routes=(Route("/", slots=("hero",)),))
    response = client.get("/", headers={**GERMAN, "referer": "https://t.co/abc"})
    assert response.text == PAGE
    assert response.headers["cache-control"] == "private"
    assert "Willkommen" in client.get("/", headers=GERMAN).text


def test_head_gets_the_same_headers_as_get_and_no_body() -> None:
    client = client_for(HTMLResponse(PAGE, headers={"etag": '"v1"'}))
    get = client.get("/", headers=GERMAN)
    head = client.head("/", headers=GERMAN)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers == get.headers


@pytest.mark.parametrize(
    "response",
    [
        Response(status_code=204),
        HTMLResponse(PAGE, status_code=404),
        HTMLResponse(PAGE, status_code=206, headers={"content-range": "bytes 0-10/100"}),
        Response(status_code=304, headers={"etag": '"v1"'}),
        RedirectResponse("/elsewhere"),
        JSONResponse({"html": PAGE}),
        Response(PAGE, media_type="text/plain"),
        HTMLResponse(PAGE, headers={"content-encoding": "br"}),
        HTMLResponse(PAGE, headers={"cache-control": "no-transform"}),
        Response(PAGE.encode("utf-16"), media_type="text/html; charset=utf-16"),
    ],
    ids=["204", "404", "206", "304", "redirect", "json", "text", "encoded", "no-transform", "utf-16"],
)
def test_responses_that_are_not_plain_200_html_pass_through_exactly(response: Response) -> None:
    expected_headers = list(response.raw_headers)
    result = client_for(response).get("/", headers=GERMAN, follow_redirects=False)
    assert result.status_code == response.status_code
    assert result.content == response.body
    assert [(k.encode(), v.encode()) for k, v in result.headers.multi_items()] == expected_headers


def test_unmatched_paths_and_disabled_routes_pass_through_untouched() -> None:
    assert client_for().get("/other", headers=GERMAN).text == PAGE
    disabled = client_for(routes=(Route("/", slots=("hero",), enabled=False),))
    assert disabled.get("/", headers=GERMAN).headers.get("vary") is None


@pytest.mark.parametrize(
    ("routes", "personalized"),
    [
        ((Route("/{rest:path}", enabled=False), Route("/", slots=("hero",))), {"/": False, "/other": False}),
        ((Route("/", slots=("hero",)), Route("/{rest:path}", enabled=False)), {"/": True, "/other": False}),
        ((Route("/{rest:path}", slots=("hero",)), Route("/other", enabled=False)), {"/": True, "/other": True}),
        ((Route("/", enabled=False), Route("/", slots=("hero",))), {"/": False, "/other": False}),
        ((Route("/", slots=("hero",)), Route("/", enabled=False)), {"/": True, "/other": False}),
    ],
)
def test_first_matching_route_wins(routes: tuple[Route, ...], personalized: dict[str, bool]) -> None:
    client = client_for(routes=routes)
    assert {path: "Willkommen" in client.get(path, headers=GERMAN).text for path in personalized} == personalized


def test_standard_param_serves_the_page_exactly_as_the_app_made_it() -> None:
    client = client_for()
    for query in ("?personalize=off", "?a=1&personalize=shared"):
        response = client.get("/" + query, headers=GERMAN)
        assert response.text == PAGE
        assert "vary" not in response.headers
        assert "set-cookie" not in response.headers


def test_post_is_not_personalized() -> None:
    assert client_for().post("/", headers=GERMAN).text == PAGE


def test_site_switch_in_the_environment_turns_everything_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_PERSONALIZE_DISABLED", "1")
    assert client_for().get("/", headers=GERMAN).text == PAGE


def test_missing_secret_is_a_startup_error() -> None:
    app = Starlette(routes=[StarletteRoute("/", lambda r: HTMLResponse(PAGE))])
    with pytest.raises(ConfigError, match="EDGE_PERSONALIZE_SECRET is not set"):
        PersonalizeMiddleware(app, config=make_config(secret_keys=()))


def test_failing_variant_serves_the_default_content_and_logs_one_warning(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "broken.html").write_text("{{ visitor.language + 1 }}")
    slots = {
        "hero": Slot(
            variants=(Variant(name="broken", when={"language": "de"}, template="broken.html", purpose="support"),)
        )
    }
    config = make_config(
        slots=slots, base_dir=tmp_path, site=make_config().site.__class__(languages=("en", "de"), templates_dir=".")
    )
    with caplog.at_level(logging.WARNING, logger="edge_personalize"):
        response = client_for(config=config).get("/", headers=GERMAN)
    assert response.status_code == 200
    assert response.text == PAGE
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'hero'" in warnings[0].getMessage() and "default content served" in warnings[0].getMessage()


def test_replacement_is_encoded_in_the_page_charset() -> None:
    slots = {
        "hero": Slot(
            variants=(Variant(name="de", when={"language": "de"}, html="<h1>Grüße ✓</h1>", purpose="support"),)
        )
    }
    page = Response(PAGE.replace("Welcome", "Café").encode("latin-1"), media_type="text/html; charset=latin-1")
    response = client_for(page, slots=slots).get("/", headers=GERMAN)
    assert "<h1>Grüße &#10003;</h1>".encode("latin-1") in response.content


def test_works_inside_gzip_middleware() -> None:
    async def endpoint(request: Request) -> Response:
        return HTMLResponse(PAGE * 10)

    app = Starlette(
        routes=[StarletteRoute("/", endpoint)],
        middleware=[
            Middleware(GZipMiddleware, minimum_size=10),
            Middleware(PersonalizeMiddleware, config=make_config()),
        ],
    )
    response = TestClient(app).get("/", headers={**GERMAN, "accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.text.count("Willkommen") == 3  # the comfort budget: at most three slots per page
    assert response.headers["vary"] == "Accept-Language, Accept-Encoding"


# Direct ASGI tests: what TestClient cannot show.


async def call(app: Any, scope: dict[str, Any], receive: Receive | None = None) -> list[Message]:
    sent: list[Message] = []

    async def default_receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive or default_receive, send)
    return sent


def http_scope(path: str = "/", method: str = "GET", headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in (headers or GERMAN).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def streaming_app(chunks: list[bytes], between: Any = None) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})
            if between is not None:
                await between(i)

    return app


def test_other_scope_types_pass_through_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])
        await send({"type": "lifespan.startup.complete"})

    middleware = PersonalizeMiddleware(app, config=make_config())
    messages = asyncio.run(call(middleware, {"type": "lifespan"}))
    assert seen == ["lifespan"]
    assert messages == [{"type": "lifespan.startup.complete"}]


def test_streamed_body_drops_content_length_and_is_rewritten_across_chunks() -> None:
    chunks = [b"<html><body><sec", b'tion data-personalize="he', b'ro"><h1>Wel', b"come</h1></section></body></html>"]
    middleware = PersonalizeMiddleware(streaming_app(chunks), config=make_config())
    messages = asyncio.run(call(middleware, http_scope()))
    start = messages[0]
    assert start["type"] == "http.response.start"
    assert b"content-length" not in dict(start["headers"])
    body = b"".join(m.get("body", b"") for m in messages[1:])
    assert body.startswith(b'<html><body><section data-personalize="hero"><h1>Willkommen</h1><style>')
    assert body.endswith(b"</details></section></body></html>")
    assert [m.get("more_body", False) for m in messages[1:]] == [True, True, True, False]


def test_first_bytes_reach_the_client_before_the_app_sends_its_last_message() -> None:
    received: list[bytes] = []
    observed: list[bytes] = []

    async def between(i: int) -> None:
        if i == 0:
            observed.append(b"".join(received))  # what the client had when the app was still working

    chunks = [b"<html><body><p>header and navigation</p>", b'<div data-personalize="hero">x</div></body></html>']
    middleware = PersonalizeMiddleware(streaming_app(chunks, between), config=make_config())

    async def send(message: Message) -> None:
        received.append(message.get("body", b""))

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    asyncio.run(middleware(http_scope(), receive, send))
    assert observed == [b"<html><body><p>header and navigation</p>"]


def test_pathsend_passes_through_with_the_original_headers() -> None:
    headers = [(b"content-type", b"text/html"), (b"content-length", b"120"), (b"etag", b'"f"')]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.pathsend", "path": "/srv/page.html"})

    middleware = PersonalizeMiddleware(app, config=make_config())
    messages = asyncio.run(call(middleware, http_scope()))
    assert messages == [
        {"type": "http.response.start", "status": 200, "headers": headers},
        {"type": "http.response.pathsend", "path": "/srv/page.html"},
    ]


def test_unknown_message_types_are_forwarded_untouched() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/html")],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": PAGE.encode()})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")], "more_trailers": False})

    messages = asyncio.run(call(PersonalizeMiddleware(app, config=make_config()), http_scope()))
    assert messages[-1] == {
        "type": "http.response.trailers",
        "headers": [(b"x-checksum", b"1")],
        "more_trailers": False,
    }


def test_client_disconnect_mid_stream_reaches_the_app_as_it_would_without_us() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<p>first</p>", "more_body": True})
        await send({"type": "http.response.body", "body": b'<div data-personalize="hero">x</div>', "more_body": True})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        if len(sent) == 2:
            raise OSError("client went away")
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    middleware = PersonalizeMiddleware(app, config=make_config())
    with pytest.raises(OSError, match="client went away"):
        asyncio.run(middleware(http_scope(), receive, send))
    assert sent[1]["body"] == b"<p>first</p>"


def test_app_error_before_the_response_starts_is_the_apps_own() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("app bug")

    with pytest.raises(RuntimeError, match="app bug"):
        asyncio.run(call(PersonalizeMiddleware(app, config=make_config()), http_scope()))


def test_streaming_response_from_starlette_is_personalized() -> None:
    async def parts():  # type: ignore[no-untyped-def]
        yield "<html><body>"
        yield '<div data-personalize="hero">x</div>'
        yield "</body></html>"

    response = client_for(StreamingResponse(parts(), media_type="text/html")).get("/", headers=GERMAN)
    assert "<h1>Willkommen</h1>" in response.text
    assert "content-length" not in response.headers


def test_a_failure_inside_the_rewriter_sends_the_page_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_personalize import rewriter

    chunks = [b"<html><body><p>one</p>", b'<div data-personalize="hero">x</div>', b"<p>two</p></body></html>"]
    calls = {"n": 0}
    original = rewriter.SlotRewriter._run

    def failing(self: rewriter.SlotRewriter, chunk: bytes, *, final: bool) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("tokenizer bug")
        return original(self, chunk, final=final)

    monkeypatch.setattr(rewriter.SlotRewriter, "_run", failing)
    messages = asyncio.run(call(PersonalizeMiddleware(streaming_app(chunks), config=make_config()), http_scope()))
    assert b"".join(m.get("body", b"") for m in messages[1:]) == b"".join(chunks)


def test_a_failure_before_the_body_serves_the_standard_page(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_personalize.personalizer import Personalizer

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("decision bug")

    monkeypatch.setattr(Personalizer, "decide", broken)
    response = client_for().get("/", headers=GERMAN)
    assert response.status_code == 200
    assert response.text == PAGE


def test_lifespan_passes_through_and_shutdown_closes_the_switch_store(monkeypatch: pytest.MonkeyPatch) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    middleware = PersonalizeMiddleware(app, config=make_config())
    closed: list[bool] = []
    monkeypatch.setattr(middleware.switches, "close", lambda: closed.append(True))
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> Message:
        return next(incoming)

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(middleware({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert closed == [True]


def count_rewrites(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from edge_personalize import rewriter

    runs: list[int] = []
    original = rewriter.SlotRewriter._run

    def counting(self: rewriter.SlotRewriter, chunk: bytes, *, final: bool) -> bytes:
        runs.append(1)
        return original(self, chunk, final=final)

    monkeypatch.setattr(rewriter.SlotRewriter, "_run", counting)
    return runs


def test_a_page_rewritten_before_for_the_same_context_comes_from_the_page_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = count_rewrites(monkeypatch)
    client = client_for()
    first = client.get("/", headers=GERMAN)
    second = client.get("/", headers=GERMAN)
    assert len(runs) == 1
    assert first.content == second.content and first.headers == second.headers
    french = client.get("/", headers={"accept-language": "fr"})
    assert french.text == PAGE


def test_the_page_cache_never_serves_one_context_what_another_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    slots = {
        "hero": Slot(
            variants=(
                Variant(
                    name="r", when={"referrer": ["search", "social", "other"]}, html="<p>hi</p>", purpose="support"
                ),
            )
        )
    }
    client = client_for(slots=slots)
    google = client.get("/", headers={"referer": "https://www.google.com/"}).text
    bing = client.get("/", headers={"referer": "https://www.bing.com/"}).text
    assert "google.com" in google and "bing.com" not in google
    assert "bing.com" in bing and "google.com" not in bing
    assert client.get("/", headers={"referer": "https://www.google.com/"}).text == google


@pytest.mark.parametrize(
    "headers", [{"cache-control": "private"}, {"cache-control": "no-store"}, {"set-cookie": "a=b"}]
)
def test_pages_the_app_keeps_private_are_never_kept_in_the_page_cache(
    monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> None:
    runs = count_rewrites(monkeypatch)
    client = client_for(HTMLResponse(PAGE, headers=headers))
    client.get("/", headers=GERMAN)
    client.get("/", headers=GERMAN)
    assert len(runs) == 2


def test_a_page_that_fell_back_is_not_kept(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = count_rewrites(monkeypatch)
    (tmp_path / "broken.html").write_text("{{ visitor.language + 1 }}")
    slots = {
        "hero": Slot(variants=(Variant(name="b", when={"language": "de"}, template="broken.html", purpose="support"),))
    }
    site = make_config().site.__class__(languages=("en", "de"), templates_dir=".")
    client = client_for(config=make_config(slots=slots, base_dir=tmp_path, site=site))
    assert client.get("/", headers=GERMAN).text == PAGE
    assert client.get("/", headers=GERMAN).text == PAGE
    assert len(runs) == 2  # rewritten again: a fixed template would show at once


def test_a_large_first_chunk_starts_going_out_before_all_of_it_is_rewritten() -> None:
    filler = b"<p>" + b"text " * 4000 + b"</p>"
    chunks = [b"<html><body>" + filler + b'<div data-personalize="hero">x</div>', b"</body></html>"]
    messages = asyncio.run(call(PersonalizeMiddleware(streaming_app(chunks), config=make_config()), http_scope()))
    bodies = [m["body"] for m in messages[1:]]
    assert 0 < len(bodies[0]) <= 8 * 1024 and bodies[0].startswith(b"<html><body><p>text ")
    assert b"".join(bodies).endswith(b"</details></div></body></html>")
    assert b"".join(bodies).startswith(b"<html><body>" + filler + b'<div data-personalize="hero"><h1>Willkommen</h1>')
