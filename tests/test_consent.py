from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient

from edge_personalize import Config, ConsentSettings, PersonalizeMiddleware, Route, Slot, Variant
from edge_personalize.consent import COOKIE_NAME, SECURE_COOKIE_NAME, Consent, ConsentManager
from edge_personalize.forms import safe_next
from tests.conftest import PAGE, SECRET, make_config

SHOP = Path(__file__).parent.parent / "examples" / "shop"
PREFIX = "/_personalize"
RETURNING = Slot(
    variants=(
        Variant(name="welcome-back", when={"returning": True}, html="<h1>Welcome back</h1>", purpose="recognize"),
    )
)


def consent_config(**overrides: Any) -> Config:
    return make_config(slots={"hero": RETURNING}, **overrides)


def client_for(config: Config | None = None, base_url: str = "http://testserver", **kwargs: Any) -> TestClient:
    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    app = Starlette(
        routes=[StarletteRoute("/", page)],
        middleware=[Middleware(PersonalizeMiddleware, config=config or consent_config(), **kwargs)],
    )
    return TestClient(app, base_url=base_url, follow_redirects=False)


def signed(data: dict[str, str], keys: tuple[str, ...] = (SECRET,)) -> str:
    return URLSafeTimedSerializer(list(reversed(keys)), salt="edge-personalize.consent").dumps(data)


def cookie(data: dict[str, str], **kwargs: Any) -> dict[str, str]:
    return {"cookie": f"{COOKIE_NAME}={signed(data, **kwargs)}"}


YESTERDAY = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
GRANTED_YESTERDAY = {"c": "g", "v": "1", "f": YESTERDAY}


def test_no_cookie_and_a_banner_before_any_choice() -> None:
    response = client_for().get("/")
    assert "set-cookie" not in response.headers
    assert "data-personalize-banner" in response.text
    assert response.text.index("data-personalize-banner") > response.text.index("</section>")
    assert response.text.endswith("</section></body></html>")


def test_banner_is_a_labelled_region_with_two_plain_forms_of_equal_weight() -> None:
    text = client_for().get("/").text
    banner = text[text.index('<section class="ep-consent"') :]
    assert 'aria-labelledby="ep-consent-title"' in banner and 'id="ep-consent-title"' in banner
    assert banner.count(f'<form method="post" action="{PREFIX}/consent">') == 2
    assert '<button type="submit" name="choice" value="accept">' in banner
    assert '<button type="submit" name="choice" value="reject">' in banner
    assert "<script" not in banner and "dialog" not in banner
    assert "180 days" in banner


def test_no_banner_when_nothing_on_the_site_needs_consent() -> None:
    response = client_for(make_config()).get("/", headers={"accept-language": "de"})
    assert "data-personalize-banner" not in response.text
    assert "cache-control" not in response.headers  # nothing depends on a cookie: still cacheable


def test_accept_sets_one_signed_cookie_and_redirects_back() -> None:
    response = client_for().post(f"{PREFIX}/consent", data={"choice": "accept", "next": "/products?page=2"})
    assert response.status_code == 303
    assert response.headers["location"] == "/products?page=2"
    cookies = response.headers.get_list("set-cookie")
    assert cookies[0].startswith(f"{COOKIE_NAME}=")
    assert cookies[0].endswith("; Max-Age=15552000; Path=/; HttpOnly; SameSite=Lax")
    assert cookies[1] == f"{SECURE_COOKIE_NAME}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"
    value = cookies[0].split(";")[0].split("=", 1)[1]
    data = URLSafeTimedSerializer(SECRET, salt="edge-personalize.consent").loads(value)
    assert data == {"c": "g", "v": "1", "f": datetime.now(UTC).date().isoformat()}


def test_on_https_the_cookie_is_secure_with_the_host_prefix() -> None:
    response = client_for(base_url="https://testserver").post(f"{PREFIX}/consent", data={"choice": "accept"})
    first = response.headers.get_list("set-cookie")[0]
    assert first.startswith(f"{SECURE_COOKIE_NAME}=")
    assert first.endswith("; Path=/; HttpOnly; SameSite=Lax; Secure")


def test_a_refusal_is_remembered_with_nothing_else_in_the_cookie() -> None:
    response = client_for().post(f"{PREFIX}/consent", data={"choice": "reject", "next": "/"})
    value = response.headers.get_list("set-cookie")[0].split(";")[0].split("=", 1)[1]
    assert URLSafeTimedSerializer(SECRET, salt="edge-personalize.consent").loads(value) == {"c": "r", "v": "1"}
    page = client_for().get("/", headers={"cookie": f"{COOKIE_NAME}={value}"})
    assert "data-personalize-banner" not in page.text
    assert "Welcome back" not in page.text


def test_withdraw_deletes_the_cookie() -> None:
    response = client_for().post(f"{PREFIX}/consent", data={"choice": "withdraw"}, headers=cookie(GRANTED_YESTERDAY))
    assert response.headers.get_list("set-cookie")[0] == f"{COOKIE_NAME}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"


def test_consent_never_changes_on_get() -> None:
    response = client_for().get(f"{PREFIX}/consent?choice=accept&next=/")
    assert response.status_code == 405
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site", "origin": "http://testserver"},
    ],
)
def test_cross_site_choices_are_refused(headers: dict[str, str]) -> None:
    response = client_for().post(f"{PREFIX}/consent", data={"choice": "accept"}, headers=headers)
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("headers", [{"sec-fetch-site": "same-origin"}, {"origin": "http://testserver"}, {}])
def test_same_origin_choices_are_accepted(headers: dict[str, str]) -> None:
    response = client_for().post(f"{PREFIX}/consent", data={"choice": "accept"}, headers=headers)
    assert response.status_code == 303


@pytest.mark.parametrize(
    ("next_value", "expected"),
    [
        ("/x?y=1", "/x?y=1"),
        ("//evil.com", "/"),
        ("https://evil.com", "/"),
        ("/\\evil.com", "/"),
        ("\\\\evil.com", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
        ("/x\x00", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.com", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_next_must_be_a_same_site_path(next_value: str | None, expected: str) -> None:
    assert safe_next(next_value) == expected


def test_open_redirect_attempt_goes_home() -> None:
    response = client_for().post(f"{PREFIX}/consent", data={"choice": "reject", "next": "//evil.com/x"})
    assert response.headers["location"] == "/"


def test_unknown_choice_is_a_clear_error() -> None:
    response = client_for().post(f"{PREFIX}/consent", data={"choice": "maybe"})
    assert response.status_code == 400
    assert "set-cookie" not in response.headers


def test_returning_visitor_content_needs_consent_and_an_earlier_first_visit() -> None:
    client = client_for()
    assert "Welcome back" in client.get("/", headers=cookie(GRANTED_YESTERDAY)).text
    today = {"c": "g", "v": "1", "f": datetime.now(UTC).date().isoformat()}
    assert "Welcome back" not in client.get("/", headers=cookie(today)).text
    assert "Welcome back" not in client.get("/").text


@pytest.mark.parametrize(
    "header",
    [
        {"cookie": f"{COOKIE_NAME}={signed(GRANTED_YESTERDAY)[:-2]}xx"},
        cookie({"c": "g", "v": "1", "f": "2000-01-01"}, keys=("another-secret-0123456789",)),
        {"cookie": f"{COOKIE_NAME}=garbage"},
        {"cookie": f"{COOKIE_NAME}={signed({'c': 'g', 'v': '0', 'f': YESTERDAY})}"},
        {"cookie": f"{COOKIE_NAME}={signed({'c': 'x', 'v': '1'})}"},
        {"cookie": "a=b; c"},
    ],
    ids=["tampered", "other-key", "garbage", "old-policy", "unknown-choice", "malformed-header"],
)
def test_tampered_or_stale_cookies_count_as_no_choice(header: dict[str, str]) -> None:
    response = client_for().get("/", headers=header)
    assert response.status_code == 200
    assert "data-personalize-banner" in response.text
    assert "Welcome back" not in response.text
    assert "set-cookie" not in response.headers


def test_raising_the_policy_version_asks_everyone_again() -> None:
    bumped = consent_config(consent=ConsentSettings(policy_version="2"))
    assert "data-personalize-banner" in client_for(bumped).get("/", headers=cookie(GRANTED_YESTERDAY)).text


def test_keys_rotate_newest_first() -> None:
    old, new = "old-secret-0123456789abc", "new-secret-0123456789abc"
    rotated = client_for(consent_config(secret_keys=(new, old)))
    assert "Welcome back" in rotated.get("/", headers=cookie(GRANTED_YESTERDAY, keys=(old,))).text
    response = rotated.post(f"{PREFIX}/consent", data={"choice": "accept"})
    value = response.headers.get_list("set-cookie")[0].split(";")[0].split("=", 1)[1]
    assert URLSafeTimedSerializer(new, salt="edge-personalize.consent").loads(value)["c"] == "g"
    retired = client_for(consent_config(secret_keys=(new,)))
    assert "Welcome back" not in retired.get("/", headers=cookie(GRANTED_YESTERDAY, keys=(old,))).text


def test_an_expired_choice_counts_as_no_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    long_ago = time.time() - 181 * 86400
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: long_ago)
    stale = cookie(GRANTED_YESTERDAY)
    monkeypatch.undo()
    assert "data-personalize-banner" in client_for().get("/", headers=stale).text


def test_gpc_counts_as_a_refusal_with_no_banner_and_no_cookie() -> None:
    response = client_for().get("/", headers={"sec-gpc": "1"})
    assert "data-personalize-banner" not in response.text
    assert "set-cookie" not in response.headers


def test_an_explicit_accept_while_sending_gpc_outranks_it() -> None:
    client = client_for()
    accepted = client.post(f"{PREFIX}/consent", data={"choice": "accept"}, headers={"sec-gpc": "1"})
    assert accepted.status_code == 303
    assert "Welcome back" in client.get("/", headers={"sec-gpc": "1", **cookie(GRANTED_YESTERDAY)}).text


def test_gpc_is_ignored_when_the_site_says_so() -> None:
    response = client_for(consent_config(consent=ConsentSettings(honor_gpc=False))).get("/", headers={"sec-gpc": "1"})
    assert "data-personalize-banner" in response.text


def test_required_for_everything_personalizes_nothing_before_consent() -> None:
    slots = {
        "hero": Slot(variants=(Variant(name="de", when={"language": "de"}, html="<h1>Hallo</h1>", purpose="support"),))
    }
    config = make_config(slots=slots, consent=ConsentSettings(required_for="everything"))
    client = client_for(config)
    before = client.get("/", headers={"accept-language": "de"})
    assert "Hallo" not in before.text
    assert "data-personalize-banner" in before.text
    assert before.headers["cache-control"] == "private"
    after = client.get("/", headers={"accept-language": "de", **cookie({"c": "g", "v": "1"})})
    assert "<h1>Hallo</h1>" in after.text
    assert "data-personalize-banner" not in after.text


def test_consent_dependent_pages_are_private_or_vary_on_cookie_where_the_site_opts_in() -> None:
    assert client_for().get("/").headers["cache-control"] == "private"
    opted = client_for(consent_config(consent=ConsentSettings(vary_cookie=True))).get("/")
    assert "cache-control" not in opted.headers
    assert opted.headers["vary"] == "Accept-Language, Cookie, Sec-GPC"


def test_a_correction_is_stored_after_consent_and_overrides_the_inferred_country() -> None:
    slots = {
        "hero": Slot(
            variants=(Variant(name="de", when={"country": "DE"}, html="<h1>Deutschland</h1>", purpose="support"),)
        ),
        "other": RETURNING,
    }
    routes = (Route("/", slots=("hero", "other"), shared_links_standard=False),)
    client = client_for(make_config(slots=slots, routes=routes))
    response = client.post(f"{PREFIX}/correct", data={"country": "de", "next": "/"}, headers={"cf-ipcountry": "AT"})
    assert response.status_code == 303
    value = response.headers.get_list("set-cookie")[0].split(";")[0].split("=", 1)[1]
    data = URLSafeTimedSerializer(SECRET, salt="edge-personalize.consent").loads(value)
    assert data["c"] == "g" and data["k"] == "DE"
    page = client.get("/", headers={"cf-ipcountry": "AT", "cookie": f"{COOKIE_NAME}={value}"})
    assert "<h1>Deutschland</h1>" in page.text
    assert "You appear to be in Germany, as you told us." in page.text


def test_consent_events_are_logged_without_anything_about_the_visitor(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="edge_personalize.consent"):
        client_for().post(f"{PREFIX}/consent", data={"choice": "accept"}, headers={"user-agent": "Secret/1.0"})
    (record,) = [r for r in caplog.records if r.name == "edge_personalize.consent"]
    message = record.getMessage()
    assert message.startswith("consent choice=accept policy_version=1 at=")
    assert "testclient" not in message and "Secret" not in message


def test_a_sites_own_consent_manager_can_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    def from_cookiebot(request: Request) -> Consent:
        # Cookiebot stores the visitor's choice in its CookieConsent cookie, e.g.
        # {stamp:'...',necessary:true,preferences:true,statistics:false,marketing:false,...}
        raw = request.cookies.get("CookieConsent", "")
        if not raw:
            return Consent()
        return Consent(state="granted" if "preferences:true" in raw else "refused", returning=True)

    client = client_for(consent=from_cookiebot)
    first = client.get("/")
    assert "data-personalize-banner" not in first.text  # the site's own manager asks, not us
    granted = client.get("/", headers={"cookie": "CookieConsent={stamp:'x',necessary:true,preferences:true}"})
    assert "Welcome back" in granted.text
    refused = client.get("/", headers={"cookie": "CookieConsent={stamp:'x',necessary:true,preferences:false}"})
    assert "Welcome back" not in refused.text


def test_consent_manager_reads_returning_from_the_first_visit_date() -> None:
    manager = ConsentManager(consent_config(), [SECRET], clock=lambda: datetime(2026, 11, 26, tzinfo=UTC))
    scope = {
        "type": "http",
        "headers": [(b"cookie", f"{COOKIE_NAME}={signed({'c': 'g', 'v': '1', 'f': '2026-11-25'})}".encode())],
    }
    consent = manager.read(scope)
    assert consent.state == "granted" and consent.returning is True and consent.first_visit == date(2026, 11, 25)


# The invariant: walk every route of the example shop in every consent state.

STATES = {
    "unknown": {},
    "granted": cookie(GRANTED_YESTERDAY),
    "refused": cookie({"c": "r", "v": "1"}),
    "gpc": {"sec-gpc": "1"},
    "gpc+granted": {"sec-gpc": "1", **cookie(GRANTED_YESTERDAY)},
    "tampered": {"cookie": f"{COOKIE_NAME}=eyJjIjoiZyJ9.xx.yy"},
    "old-policy": cookie({"c": "g", "v": "0"}),
}
SHOP_PATHS = ["/", "/products", "/products/1", "/products/404", "/help/returns", "/privacy", "/?personalize=off",
              "/?personalize=shared", f"{PREFIX}/nope", "/missing"]  # fmt: skip


@pytest.mark.parametrize("state", list(STATES))
def test_no_set_cookie_anywhere_but_the_consent_endpoints_own_response(shop: TestClient, state: str) -> None:
    for path in SHOP_PATHS:
        for extra in ({}, {"accept-language": "de", "cf-ipcountry": "AT", "referer": "https://www.google.com/"}):
            for method in ("GET", "HEAD"):
                response = shop.request(method, path, headers={**STATES[state], **extra})
                assert response.status_code < 500
                assert "set-cookie" not in response.headers, (method, path, state)
    answer = shop.post(f"{PREFIX}/consent", data={"choice": "accept", "next": "/"}, headers=STATES[state])
    assert answer.status_code == 303
    assert "set-cookie" in answer.headers
