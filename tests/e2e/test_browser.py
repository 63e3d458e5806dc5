"""The shop in a real Chromium: cookies, the badge, the banner, GPC, and accessibility."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SECRET

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
# A desktop Chrome: headless Chromium names itself HeadlessChrome, which counts as a crawler.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
SHOP_PAGES = ["/", "/products", "/products/1", "/help/returns", "/privacy", "/_personalize/why?path=/"]

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (CI installs it)", allow_module_level=True)


class Clock:
    """The server's clock, which a test may move to the next day."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def shop_url(clock: Clock) -> Iterator[str]:
    import uvicorn
    from starlette.applications import Starlette

    from edge_personalize import PersonalizeMiddleware, load_config
    from examples.shop.app import HERE, app

    # The shop as it ships, but with a clock the test can move forward.
    config = replace(load_config(HERE / "personalize.toml"), secret_keys=(SECRET,))
    shop = Starlette(routes=app.router.routes)
    shop.add_middleware(PersonalizeMiddleware, config=config, clock=clock)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(shop, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the shop did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(user_agent=USER_AGENT, locale="de-DE", extra_http_headers={"CF-IPCountry": "AT"})
    yield ctx
    ctx.close()


def watch_cookies(page: Any) -> list[str]:
    """Every Set-Cookie the browser receives on this page."""
    seen: list[str] = []
    page.on(
        "response", lambda response: seen.extend(v for k, v in response.headers_array() if k.lower() == "set-cookie")
    )
    return seen


def axe_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])})" for v in results.response["violations"]]


def test_browsing_before_any_choice_sets_no_cookie(shop_url: str, context: Any) -> None:
    page = context.new_page()
    set_cookies = watch_cookies(page)
    for path in SHOP_PAGES:
        page.goto(shop_url + path)
        page.click("text=Warum sehe ich das?", timeout=2000) if page.locator("details.ep-badge").count() else None
    page.goto(shop_url + "/?personalize=off")
    assert set_cookies == []
    assert context.cookies() == []


def test_the_badge_opens_and_closes_with_the_keyboard(shop_url: str, context: Any) -> None:
    page = context.new_page()
    page.goto(shop_url + "/")
    summary = page.locator("details.ep-badge > summary").first
    assert summary.inner_text() == "Warum sehe ich das?"
    details = page.locator("details.ep-badge").first
    for _ in range(60):  # reach the badge the way a keyboard user does
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.tagName") == "SUMMARY":
            break
    else:
        pytest.fail("the badge's summary is not reachable with Tab")
    assert details.get_attribute("open") is None
    page.keyboard.press("Enter")
    assert details.get_attribute("open") == ""
    assert "Ihr Browser fordert Seiten auf Deutsch an" in details.inner_text() or "Deutsch" in details.inner_text()
    page.keyboard.press("Space")
    assert details.get_attribute("open") is None


def test_the_standard_page_link_shows_the_default_content_without_a_cookie(shop_url: str, context: Any) -> None:
    page = context.new_page()
    set_cookies = watch_cookies(page)
    page.goto(shop_url + "/")
    assert "Willkommen in unserem Laden" in page.inner_text("main")
    page.locator("details.ep-badge > summary").first.click()
    page.locator("details.ep-badge a", has_text="Standardseite anzeigen").first.click()
    page.wait_for_url("**/?personalize=off")
    assert "Welcome to our shop" in page.inner_text("main")
    assert page.locator("[data-personalize-badge]").count() == 0
    assert set_cookies == [] and context.cookies() == []


def test_accept_then_the_next_visit_recognizes_a_returning_visitor(shop_url: str, context: Any, clock: Clock) -> None:
    page = context.new_page()
    page.goto(shop_url + "/")
    assert page.locator("[data-personalize-banner]").count() == 1
    page.locator('[data-personalize-banner] button[value="accept"]').click()
    page.wait_for_url(shop_url + "/")
    assert page.locator("[data-personalize-banner]").count() == 0
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    clock.offset = timedelta(days=1)  # the next visit, tomorrow
    try:
        page.goto(shop_url + "/")
        assert "Welcome back!" in page.inner_text("main")
    finally:
        clock.offset = timedelta()


def test_refuse_and_the_banner_does_not_come_back(shop_url: str, context: Any) -> None:
    page = context.new_page()
    page.goto(shop_url + "/products")
    page.locator('[data-personalize-banner] button[value="reject"]').click()
    page.wait_for_url(shop_url + "/products")
    for path in ("/", "/products", "/products/1"):
        page.goto(shop_url + path)
        assert page.locator("[data-personalize-banner]").count() == 0
    assert "Welcome back!" not in page.inner_text("main")


def test_global_privacy_control_never_sees_a_banner(shop_url: str, browser: Any) -> None:
    context = browser.new_context(user_agent=USER_AGENT, extra_http_headers={"Sec-GPC": "1"})
    try:
        page = context.new_page()
        set_cookies = watch_cookies(page)
        for path in SHOP_PAGES:
            page.goto(shop_url + path)
            assert page.locator("[data-personalize-banner]").count() == 0
        assert set_cookies == [] and context.cookies() == []
    finally:
        context.close()


@pytest.mark.parametrize("path", SHOP_PAGES)
def test_no_accessibility_violations_on_each_page_type(shop_url: str, context: Any, path: str) -> None:
    page = context.new_page()
    page.goto(shop_url + path)
    assert axe_violations(page) == []


def test_no_accessibility_violations_with_the_badge_open_and_the_banner_showing(shop_url: str, context: Any) -> None:
    page = context.new_page()
    page.goto(shop_url + "/", referer="https://www.google.com/")
    assert page.locator("[data-personalize-banner]").count() == 1
    for summary in page.locator("details.ep-badge > summary").all():
        summary.click()
    assert page.locator("details.ep-badge[open]").count() >= 2
    assert axe_violations(page) == []


def test_screenshot_of_the_badge_open(shop_url: str, browser: Any, tmp_path: Path) -> None:
    """Renders the README's screenshot; refreshes docs/badge.png when EDGE_PERSONALIZE_SCREENSHOT is set."""
    context = browser.new_context(user_agent=USER_AGENT, locale="de-DE", viewport={"width": 900, "height": 640},
                                  extra_http_headers={"CF-IPCountry": "AT", "Sec-GPC": "1"})  # fmt: skip
    try:
        page = context.new_page()
        page.goto(shop_url + "/")
        page.locator("details.ep-badge > summary").first.click()
        target = tmp_path / "badge.png"
        page.locator("main").screenshot(path=str(target))
        assert target.stat().st_size > 10_000
        if os.environ.get("EDGE_PERSONALIZE_SCREENSHOT"):
            docs = Path(__file__).parents[2] / "docs"
            docs.mkdir(exist_ok=True)
            shutil.copy(target, docs / "badge.png")
    finally:
        context.close()
