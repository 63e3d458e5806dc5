from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

SHOP = Path(__file__).parent.parent / "examples" / "shop"
WHY = "/_personalize/why"
GERMAN_IN_AUSTRIA = {"accept-language": "de-AT,de;q=0.9", "cf-ipcountry": "AT"}


def test_why_page_explains_every_slot_for_this_visitor(shop: TestClient) -> None:
    response = shop.get(f"{WHY}?path=/products/1", headers=GERMAN_IN_AUSTRIA)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "private, no-store"
    text = response.text
    assert '<html lang="de">' in text
    assert "Warum sehe ich das?" in text
    assert "Österreich" in text and "CF-IPCountry" in text
    assert "dach" in text and "outside-europe" in text  # the variant this visitor does not get, and why not
    assert 'href="/products/1?personalize=off"' in text


def test_why_page_in_json_names_the_variant_the_facts_and_the_alternatives(shop: TestClient) -> None:
    page = shop.get(f"{WHY}?path=/", headers={**GERMAN_IN_AUSTRIA, "accept": "application/json"}).json()
    assert page["path"] == "/" and page["language"] == "de" and page["personalized"] is True
    slots = {slot["name"]: slot for slot in page["slots"]}
    assert slots["hero"]["variant"] == "german-speakers"
    assert [fact["signal"] for fact in slots["hero"]["facts"]] == ["language"]
    products = shop.get(f"{WHY}?path=/products", headers={**GERMAN_IN_AUSTRIA, "accept": "application/json"}).json()
    shipping = products["slots"][0]
    assert shipping["variant"] == "dach"
    assert shipping["facts"][0]["source"] == "CF-IPCountry"
    statuses = {alt["name"]: alt["status"] for alt in slots["hero"]["alternatives"]}
    assert statuses == {"german-speakers": "chosen", "french-speakers": "does-not-apply"}
    assert slots["reminder"]["alternatives"][0]["status"] == "needs-consent"
    assert page["stored"]["stored"] is False


def test_why_page_uses_the_referrer_category_the_badge_passed_on(shop: TestClient) -> None:
    page = shop.get(f"{WHY}?path=/&ref=search", headers={"accept": "application/json"}).json()
    welcome = next(slot for slot in page["slots"] if slot["name"] == "welcome")
    assert welcome["variant"] == "from-search"
    assert welcome["facts"][0]["text"] == "You came from a search engine."


def test_why_page_for_a_page_nobody_personalizes(shop: TestClient) -> None:
    page = shop.get(f"{WHY}?path=/help/returns", headers={"accept": "application/json"}).json()
    assert page["personalized"] is False and page["slots"] == []
    assert "same for everyone" in page["standard_reason"]


@pytest.mark.parametrize(
    "path", ['/"><script>alert(1)</script>', "//evil.com", "javascript:alert(1)", "/%22%3E%3Cscript%3E"]
)
def test_why_page_never_echoes_request_values_unescaped(shop: TestClient, path: str) -> None:
    hostile = {"user-agent": "<script>ua()</script>", "referer": "https://x.example/<script>r()</script>",
               "cf-ipcity": "<script>city()</script>", "accept-language": "<script>al()</script>"}  # fmt: skip
    response = shop.get(WHY, params={"path": path}, headers=hostile)
    assert response.status_code == 200
    assert "<script>" not in response.text
    assert "evil.com" not in response.text and "javascript:" not in response.text


def test_why_page_offers_consent_and_corrections_where_the_site_asks_for_consent(shop: TestClient) -> None:
    text = shop.get(f"{WHY}?path=/").text
    assert 'name="choice" value="accept"' in text and 'name="choice" value="reject"' in text
    assert '<h2 id="correct">' in text
    assert '<option value="AT">Austria</option>' in text


def test_policy_is_public_cacheable_and_the_same_for_every_visitor(shop: TestClient) -> None:
    first = shop.get("/_personalize/policy.json")
    second = shop.get("/_personalize/policy.json", headers={**GERMAN_IN_AUSTRIA, "referer": "https://www.google.com/"})
    assert first.headers["cache-control"] == "public, max-age=300"
    assert first.content == second.content
    policy = first.json()
    assert policy["site"]["languages"] == ["en", "de", "fr"]
    assert policy["consent"]["asks"] is True and policy["consent"]["max_age_days"] == 180
    assert policy["limits"] == {"max_slots_per_page": 3, "max_signals_per_variant": 2}
    routes = {route["path"]: route for route in policy["routes"]}
    assert routes["/help/{slug}"]["enabled"] is False
    assert routes["/"]["signals"] == ["language", "referrer", "returning"]
    assert routes["/"]["cache"] == {"vary": ["Accept-Language", "Cookie", "Sec-GPC"], "private": True}
    hero = policy["slots"]["hero"]["variants"][0]
    assert hero == {
        "name": "german-speakers",
        "enabled": True,
        "purpose": "support",
        "when": {"language": "de"},
        "signals": ["language"],
    }
    assert "Willkommen" not in first.text  # the policy, not the content


def test_unknown_endpoint_is_404(shop: TestClient) -> None:
    assert shop.get("/_personalize/nope").status_code == 404
    assert shop.post("/_personalize/why").status_code == 404
