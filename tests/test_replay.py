"""A response made before is sent again only for the same inputs, and only while it is still true.

The middleware keeps whole responses (for pages the app lets caches share) by a keyed digest of
what they were made from. Each test here compares with what the middleware makes afresh, or
changes one input (time, a switch, the app's body) and expects a new response.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient
from starlette.types import Message

from edge_personalize import LocationSettings, OwnerSettings, PersonalizeMiddleware, Slot, Variant
from edge_personalize import middleware as middleware_module
from edge_personalize.cache import BoundedCache
from edge_personalize.consent import COOKIE_NAME
from edge_personalize.native import speedups
from edge_personalize.preview import Simulation
from edge_personalize.replay import python_key_inputs
from tests.conftest import DATA, PAGE, SECRET, make_config

SHOP = Path(__file__).parent.parent / "examples" / "shop"
TODAY = datetime.now(UTC).date()


@pytest.fixture(autouse=True, params=["native", "pure"])
def encoding(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with the C encoding of a response's inputs and with the pure-Python one."""
    if request.param == "pure":
        monkeypatch.setattr(middleware_module, "key_inputs", python_key_inputs)
    elif speedups() is None:
        pytest.skip("edge_personalize._speedups is not built")
    else:
        monkeypatch.setattr(middleware_module, "key_inputs", speedups().key_inputs)  # type: ignore[union-attr]


def signed(data: dict[str, str]) -> str:
    return URLSafeTimedSerializer([SECRET], salt="edge-personalize.consent").dumps(data)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def shop_pair(clock: Clock) -> tuple[TestClient, TestClient, PersonalizeMiddleware]:
    """The example shop twice on one clock: one middleware as it ships, one that never sends a response again."""
    from examples.shop.app import app as shop

    def build(keep: bool) -> tuple[TestClient, PersonalizeMiddleware]:
        middleware = PersonalizeMiddleware(Starlette(routes=shop.routes), SHOP / "personalize.toml", clock=clock)
        if not keep:
            middleware.responses = BoundedCache(max_bytes=0)
        return TestClient(middleware, follow_redirects=False), middleware

    kept, middleware = build(True)
    fresh, _ = build(False)
    return kept, fresh, middleware


COOKIES = [
    None,
    f"{COOKIE_NAME}={signed({'c': 'g', 'v': '1', 'f': TODAY.isoformat()})}",
    f"{COOKIE_NAME}={signed({'c': 'g', 'v': '1', 'f': (TODAY - timedelta(days=3)).isoformat(), 'k': 'AT'})}",
    f"{COOKIE_NAME}={signed({'c': 'r', 'v': '1'})}",
    f"{COOKIE_NAME}=tampered",
]
REQUESTS = st.fixed_dictionaries(
    {
        "path": st.sampled_from(["/", "/products", "/products/1", "/help/returns"]),
        "query": st.sampled_from(["", "utm_source=newsletter&utm_medium=email", "personalize=off", "q=1"]),
        "accept-language": st.sampled_from([None, "de-AT,de;q=0.9", "fr", "en-US,en;q=0.5", "*"]),
        "cf-ipcountry": st.sampled_from([None, "AT", "US", "FR", "XX"]),
        "referer": st.sampled_from(
            [None, "https://www.google.com/search?q=jacket", "https://t.co/abc", "http://testserver/products"]
        ),
        "user-agent": st.sampled_from(
            [
                None,
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                "Version/17.4 Mobile/15E148 Safari/604.1",
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            ]
        ),
        "cookie": st.sampled_from(COOKIES),
        "sec-gpc": st.sampled_from([None, "1"]),
        "days_later": st.sampled_from([0, 0, 0, 1]),
    }
)


def _fetch(
    client: TestClient, request: dict[str, Any], method: str = "GET"
) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = {k: v for k, v in request.items() if k not in ("path", "query", "days_later") and v is not None}
    url = request["path"] + (f"?{request['query']}" if request["query"] else "")
    response = client.request(method, url, headers=headers)
    return response.status_code, sorted(response.headers.multi_items()), response.content


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", SECRET)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(REQUESTS, min_size=2, max_size=12), st.sampled_from(["GET", "HEAD"]))
def test_every_response_equals_the_one_made_afresh(secret: None, requests: list[dict[str, Any]], method: str) -> None:
    clock = Clock()
    kept, fresh, _ = shop_pair(clock)
    for request in [*requests, *requests]:  # the second round meets responses made in the first
        clock.now += timedelta(days=request["days_later"])
        assert _fetch(kept, request, method) == _fetch(fresh, request, method)


def test_the_same_request_is_answered_from_the_kept_response(secret: None) -> None:
    clock = Clock()
    kept, _, middleware = shop_pair(clock)
    request = {"accept-language": "de", "cf-ipcountry": "AT", "referer": "https://www.google.com/"}
    first = kept.get("/", headers=request)
    assert len(middleware.responses) == 1
    second = kept.get("/", headers=request)
    assert second.content == first.content and second.headers == first.headers
    assert len(middleware.responses) == 1
    # Counted each time it was shown, as if it had been made again.
    assert middleware.counts[("hero", "german-speakers")] == 2
    assert middleware.counts[("welcome", "from-search")] == 2


def test_a_new_day_makes_a_first_time_visitor_returning(secret: None) -> None:
    clock = Clock()
    kept, _, _ = shop_pair(clock)
    granted_today = {"cookie": f"{COOKIE_NAME}={signed({'c': 'g', 'v': '1', 'f': clock.now.date().isoformat()})}"}
    assert "Welcome back" not in kept.get("/", headers=granted_today).text
    clock.now += timedelta(days=1)
    assert "Welcome back" in kept.get("/", headers=granted_today).text


def test_a_choice_that_ran_out_is_not_answered_from_before(secret: None, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    kept, _, _ = shop_pair(clock)
    signed_at = clock.now.timestamp() - 180 * 86400 + 60  # runs out in a minute (max_age_days = 180)
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: signed_at)
    refused = {"cookie": f"{COOKIE_NAME}={signed({'c': 'r', 'v': '1'})}"}
    monkeypatch.undo()
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", SECRET)
    assert "data-personalize-banner" not in kept.get("/", headers=refused).text
    clock.now += timedelta(minutes=2)
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: clock.now.timestamp())
    assert "data-personalize-banner" in kept.get("/", headers=refused).text


def _middleware(tmp_path: Path, body: Callable[[], str] = lambda: PAGE, **kwargs: Any) -> PersonalizeMiddleware:
    async def endpoint(request: Request) -> Response:
        return HTMLResponse(body())

    config = make_config(owner=OwnerSettings(switches=str(tmp_path / "switches.toml")), **kwargs)
    return PersonalizeMiddleware(Starlette(routes=[StarletteRoute("/", endpoint)]), config)


GERMAN = {"accept-language": "de"}


def _asgi(
    app: PersonalizeMiddleware, *headers: tuple[bytes, bytes], method: str = "GET", client: str = "127.0.0.1"
) -> list[Message]:
    """The messages `app` sends for one request, driven directly (no test client in between)."""
    scope = {"type": "http", "method": method, "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
             "headers": list(headers), "client": (client, 40000), "server": ("shop.example", 443),
             "scheme": "https", "http_version": "1.1"}  # fmt: skip
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_a_switch_turned_off_applies_to_the_next_request(tmp_path: Path) -> None:
    middleware = _middleware(tmp_path)
    client = TestClient(middleware)
    assert "Willkommen" in client.get("/", headers=GERMAN).text
    middleware.set_switch("variant", "hero/german-speakers", False)
    assert "Willkommen" not in client.get("/", headers=GERMAN).text
    middleware.set_switch("variant", "hero/german-speakers", True)
    assert "Willkommen" in client.get("/", headers=GERMAN).text


def test_a_new_body_from_the_app_is_rewritten_afresh(tmp_path: Path) -> None:
    versions = iter(range(1000))

    def body() -> str:
        return PAGE.replace("intro", f"intro {next(versions)}")

    client = TestClient(_middleware(tmp_path, body))
    assert "intro 0" in client.get("/", headers=GERMAN).text
    assert "intro 1" in client.get("/", headers=GERMAN).text


def test_a_new_body_from_the_app_takes_the_place_of_the_kept_one(tmp_path: Path) -> None:
    versions = iter([0, 1, 0, 1])

    def body() -> str:
        return PAGE.replace("intro", f"intro {next(versions)}")

    middleware = _middleware(tmp_path, body)
    client = TestClient(middleware)
    for version in (0, 1, 0, 1):
        text = client.get("/", headers=GERMAN).text
        assert f"intro {version}" in text and "Willkommen" in text
    [kept] = middleware.responses._items.values()  # one response kept for one set of request values
    assert b"intro 1" in kept.source and b"intro 1" in kept.body


def test_a_body_sent_in_parts_is_made_afresh_and_leaves_the_kept_response(tmp_path: Path) -> None:
    parts = iter([1, 3, 1])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body, count = PAGE.encode(), next(parts)
        headers = [(b"content-type", b"text/html; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(count):
            piece = body[len(body) * i // count : len(body) * (i + 1) // count]
            await send({"type": "http.response.body", "body": piece, "more_body": i < count - 1})

    middleware = PersonalizeMiddleware(app, make_config(owner=OwnerSettings(switches=str(tmp_path / "s.toml"))))
    pages = []
    for _ in range(3):
        sent = _asgi(middleware, (b"accept-language", b"de"))
        pages.append(b"".join(message.get("body", b"") for message in sent[1:]))
        [kept] = middleware.responses._items.values()
        assert kept.body == pages[0]
    assert pages[0] == pages[1] == pages[2] and b"Willkommen" in pages[0]


@pytest.mark.parametrize(
    "second, rewritten, kept",
    [
        ({"set-cookie": "sid=2"}, True, False),
        ({"cache-control": "private"}, True, False),
        ({"cache-control": "no-store"}, True, False),
        ({"cache-control": "no-transform"}, False, False),
        ({"content-encoding": "br"}, False, False),
        ({"x-version": "2"}, True, True),
    ],
)
def test_the_same_body_with_other_headers_from_the_app_is_not_answered_from_before(
    tmp_path: Path, second: dict[str, str], rewritten: bool, kept: bool
) -> None:
    headers = iter([{}, second, second])

    async def endpoint(request: Request) -> Response:
        return HTMLResponse(PAGE, headers=next(headers))

    config = make_config(owner=OwnerSettings(switches=str(tmp_path / "switches.toml")))
    middleware = PersonalizeMiddleware(Starlette(routes=[StarletteRoute("/", endpoint)]), config)
    client = TestClient(middleware)
    assert "Willkommen" in client.get("/", headers=GERMAN).text
    for _ in range(2):
        response = client.get("/", headers=GERMAN)
        for name, value in second.items():
            assert value in response.headers.get(name, "")
        assert ("Willkommen" in response.text) == rewritten
        # The first response gave way, and the second took its place if it may be kept at all.
        assert [dict(value.app_headers).get(b"x-version") for value in middleware.responses._items.values()] == (
            [b"2"] if kept else []
        )


@pytest.mark.parametrize("first, then", [("GET", "HEAD"), ("HEAD", "GET")])
def test_a_response_kept_for_one_method_is_right_for_the_other(tmp_path: Path, first: str, then: str) -> None:
    middleware = _middleware(tmp_path)
    german = (b"accept-language", b"de")
    made = _asgi(middleware, german, method=first)
    assert len(middleware.responses) == 1
    again = _asgi(middleware, german, method=then)
    assert again[0]["headers"] == made[0]["headers"]
    made_body, again_body = (b"".join(m.get("body", b"") for m in sent[1:]) for sent in (made, again))
    full = made_body if first == "GET" else again_body
    assert b"Willkommen" in full
    assert int(dict(again[0]["headers"])[b"content-length"]) == len(full)
    assert (made_body if first == "HEAD" else again_body) == b""


def test_headers_the_app_changes_after_its_start_message_are_never_sent(tmp_path: Path) -> None:
    sessions = iter(range(1, 100))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = PAGE.encode()
        headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        headers.append((b"set-cookie", b"sid=%d" % next(sessions)))  # too late: a server has sent the head
        await send({"type": "http.response.body", "body": body})

    middleware = PersonalizeMiddleware(app, make_config(owner=OwnerSettings(switches=str(tmp_path / "s.toml"))))
    for _ in range(2):
        sent = _asgi(middleware, (b"accept-language", b"de"))
        assert b"Willkommen" in sent[1]["body"]
        assert not any(name == b"set-cookie" for name, _ in sent[0]["headers"])


@pytest.mark.parametrize(
    "headers, rewritten",
    [
        ([[b"content-type", b"text/html; charset=utf-8"]], True),
        ([(b"content-type", b"text/html; charset=utf-8"), (b"x-version", bytearray(b"1"))], True),
        ([(b"content-type", bytearray(b"text/html; charset=utf-8"))], True),
        ([(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", "public")], False),  # as given
    ],
)
def test_headers_given_as_other_objects_than_bytes_pairs_are_never_kept(
    tmp_path: Path, headers: list[Any], rewritten: bool
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": PAGE.encode()})

    middleware = PersonalizeMiddleware(app, make_config(owner=OwnerSettings(switches=str(tmp_path / "s.toml"))))
    for _ in range(2):
        sent = _asgi(middleware, (b"accept-language", b"de"))
        assert (b"Willkommen" in sent[1]["body"]) == rewritten
    assert len(middleware.responses) == 0


def test_a_status_given_as_an_http_status_is_kept_too(tmp_path: Path) -> None:
    async def endpoint(request: Request) -> Response:
        return HTMLResponse(PAGE, status_code=HTTPStatus.OK)

    config = make_config(owner=OwnerSettings(switches=str(tmp_path / "switches.toml")))
    middleware = PersonalizeMiddleware(Starlette(routes=[StarletteRoute("/", endpoint)]), config)
    assert "Willkommen" in TestClient(middleware).get("/", headers=GERMAN).text
    assert len(middleware.responses) == 1


def test_a_page_as_large_as_the_page_cache_takes_is_kept_with_the_body_it_came_from(tmp_path: Path) -> None:
    large = PAGE.replace("</body>", "<p>" + "x" * 200_000 + "</p></body>")
    middleware = _middleware(tmp_path, lambda: large)
    client = TestClient(middleware)
    for headers in (GERMAN, {"accept-language": "en"}):  # rewritten, and not rewritten at all
        client.get("/", headers=headers)
    assert len(middleware.responses) == 2


def test_another_status_with_the_same_headers_and_body_is_not_answered_from_before(tmp_path: Path) -> None:
    statuses = iter([200, 404])

    async def endpoint(request: Request) -> Response:
        return HTMLResponse(PAGE, status_code=next(statuses))

    config = make_config(owner=OwnerSettings(switches=str(tmp_path / "switches.toml")))
    middleware = PersonalizeMiddleware(Starlette(routes=[StarletteRoute("/", endpoint)]), config)
    client = TestClient(middleware)
    assert "Willkommen" in client.get("/", headers=GERMAN).text
    missing = client.get("/", headers=GERMAN)
    assert missing.status_code == 404
    assert missing.text == PAGE  # as the app sent it: only 200 pages are personalized
    assert len(middleware.responses) == 0  # the app answers otherwise now: the kept response is gone


def test_random_holdouts_are_drawn_for_every_view(tmp_path: Path) -> None:
    held = Slot(variants=make_config().slots["hero"].variants, holdout=0.5)
    middleware = _middleware(tmp_path, slots={"hero": held})
    client = TestClient(middleware)
    pages = {client.get("/", headers=GERMAN).text for _ in range(40)}
    assert len(pages) == 2  # with and without the German hero
    assert len(middleware.responses) == 0


@pytest.mark.parametrize(
    "headers", [{"cache-control": "private, max-age=60"}, {"cache-control": "no-store"}, {"set-cookie": "sid=1"}]
)
def test_responses_the_app_keeps_private_are_never_kept(tmp_path: Path, headers: dict[str, str]) -> None:
    async def endpoint(request: Request) -> Response:
        return HTMLResponse(PAGE, headers=headers)

    config = make_config(owner=OwnerSettings(switches=str(tmp_path / "switches.toml")))
    middleware = PersonalizeMiddleware(Starlette(routes=[StarletteRoute("/", endpoint)]), config)
    assert "Willkommen" in TestClient(middleware).get("/", headers=GERMAN).text
    assert len(middleware.responses) == 0


def test_kept_responses_hold_no_request_value(secret: None) -> None:
    clock = Clock()
    kept, _, middleware = shop_pair(clock)
    referer = "https://www.google.com/search?q=very-private-search-words"
    agent = "Mozilla/5.0 (X11; Linux x86_64) UniqueBrowser/987.654"
    kept.get("/", headers={"referer": referer, "user-agent": agent, "cf-ipcountry": "AT"})
    assert len(middleware.responses) == 1
    held = pickle.dumps(dict(middleware.responses._items))
    for value in (b"very-private-search-words", b"UniqueBrowser"):
        assert value not in held


def test_the_owners_trace_is_never_answered_from_before(secret: None) -> None:
    clock = Clock()
    kept, _, middleware = shop_pair(clock)
    kept.get("/", headers={"x-personalize-trace": "1", "accept-language": "de"})
    assert len(middleware.responses) == 0


def test_a_preview_link_not_valid_yet_is_never_answered_from_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    middleware = _middleware(tmp_path)
    soon = time.time() + 60
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: soon)
    link = middleware.previews.link("/", Simulation.from_values({"language": "de"}))  # signed by a clock ahead
    monkeypatch.undo()
    client = TestClient(middleware)
    early = client.get(link, headers={"accept-language": "fr"})
    assert "x-personalize-trace" not in early.headers and "Willkommen" not in early.text
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: soon + 1)
    due = client.get(link, headers={"accept-language": "fr"})
    assert "x-personalize-trace" in due.headers and "Willkommen" in due.text
    assert len(middleware.responses) == 0


def test_the_client_address_is_an_input_when_the_location_comes_from_geoip(tmp_path: Path) -> None:
    location = LocationSettings(
        source="geoip", geoip_database=str(DATA / "geoip" / "GeoLite2-City-Test.mmdb"), trusted_proxies=("10.0.0.0/8",)
    )
    british = Slot(variants=(Variant(name="uk", when={"country": "GB"}, html="<h1>Cheers</h1>", purpose="support"),))
    middleware = _middleware(tmp_path, slots={"hero": british}, location=location)

    def page(client: str, *headers: tuple[bytes, bytes]) -> bytes:
        return b"".join(m.get("body", b"") for m in _asgi(middleware, *headers, client=client)[1:])

    assert b"Cheers" in page("81.2.69.142")
    assert b"Cheers" not in page("127.0.0.1")
    assert b"Cheers" in page("81.2.69.142")
    forwarded = (b"x-forwarded-for", b"81.2.69.142")
    assert b"Cheers" in page("10.1.2.3", forwarded)
    assert b"Cheers" not in page("10.1.2.3", (b"x-forwarded-for", b"127.0.0.1"))


def test_a_choice_signed_by_a_clock_ahead_is_not_kept_as_no_choice(
    secret: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another server whose clock runs ahead signed it: unreadable here for now, readable soon.
    clock = Clock()
    kept, _, middleware = shop_pair(clock)
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: clock.now.timestamp() + 5)
    ahead = {"cookie": f"{COOKIE_NAME}={signed({'c': 'g', 'v': '1', 'f': (TODAY - timedelta(days=2)).isoformat()})}"}
    monkeypatch.undo()
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", SECRET)
    assert "data-personalize-banner" in kept.get("/", headers=ahead).text
    assert len(middleware.responses) == 0
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: clock.now.timestamp() + 10)
    assert "Welcome back" in kept.get("/", headers=ahead).text


def test_a_response_made_across_a_policy_reload_is_not_kept(secret: None, tmp_path: Path) -> None:
    import shutil

    from examples.shop.app import app as shop

    policy = tmp_path / "personalize.toml"
    shutil.copytree(SHOP / "variants", tmp_path / "variants")
    shutil.copy(SHOP / "personalize.toml", policy)
    reload_next, renamed = [False], [False]

    async def reloading(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and reload_next[0]:
            middleware._reload(policy)  # the policy changes while this response is being made

        async def renaming(message: Message) -> None:
            if renamed[0] and message["type"] == "http.response.body":
                message = {**message, "body": message["body"].replace(b"Everything we make", b"Everything We make")}
            await send(message)

        await Starlette(routes=shop.routes)(scope, receive, renaming)

    middleware = PersonalizeMiddleware(reloading, policy)
    client = TestClient(middleware)
    reload_next[0] = True
    client.get("/products", headers={"cf-ipcountry": "AT"})
    assert len(middleware.responses) == 0
    reload_next[0] = False
    client.get("/products", headers={"cf-ipcountry": "AT"})
    assert len(middleware.responses) == 1
    # A kept response the app no longer matches, made afresh while the policy changes: kept nowhere.
    renamed[0] = reload_next[0] = True
    response = client.get("/products", headers={"cf-ipcountry": "AT"})
    assert "Everything We make" in response.text and "Free shipping to Germany, Austria" in response.text
    assert len(middleware.responses) == 0


def test_a_page_from_the_page_cache_is_counted_each_time_it_is_sent_again(secret: None) -> None:
    clock = Clock()
    kept, _, middleware = shop_pair(clock)
    kept.get("/", headers={"accept-language": "de"})
    for _ in range(3):  # another request of the same kind: the page cache, then the kept response
        kept.get("/", headers={"accept-language": "de-DE"})
    assert middleware.counts[("hero", "german-speakers")] == 4


def test_the_same_inputs_give_the_same_key_whatever_objects_carry_them(secret: None) -> None:
    clock = Clock()
    kept, _, middleware = shop_pair(clock)
    for _ in range(4):
        kept.get("/", headers={"accept-language": "de", "cf-ipcountry": "AT"})
    assert len(middleware.responses) == 1


def test_the_caches_are_bounded_by_entries_as_well_as_bytes() -> None:
    cache: BoundedCache[bytes] = BoundedCache(max_bytes=1 << 20, max_items=3)
    for key in range(10):
        cache.put(key, b"x", 1)
    assert len(cache) == 3
    assert cache.get(9) == b"x" and cache.get(0) is None


def test_the_oldest_values_go_first_and_a_discarded_one_frees_its_bytes() -> None:
    cache: BoundedCache[int] = BoundedCache(max_bytes=10, max_item_bytes=10)
    cache.put("a", 1, 4)
    cache.put("b", 2, 4)
    assert cache.get("a") == 1
    cache.put("c", 3, 4)  # 12 bytes: "a", the oldest, goes
    assert [cache.get(key) for key in "abc"] == [None, 2, 3]
    cache.discard("b")
    cache.put("d", 4, 6)  # fits once the bytes of "b" are freed
    cache.put("e", 5, 11)  # larger than any value kept
    assert [cache.get(key) for key in "bcde"] == [None, 3, 4, None]
