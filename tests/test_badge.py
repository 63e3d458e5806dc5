from __future__ import annotations

import html
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient

from edge_personalize import LocationSettings, PersonalizeMiddleware, Route, SiteSettings, Slot, Variant
from edge_personalize.i18n import country_name, translations
from edge_personalize.signals.language import language_name
from tests.conftest import PAGE, make_config

LANGUAGES = ("en", "de", "fr", "es", "nl", "it")
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
VARIANTS = (
    Variant(name="dach-german", when={"country": ["AT", "CH"], "language": "de"}, html="<p>v1</p>", purpose="support"),
    Variant(name="from-search", when={"referrer": "search"}, html="<p>v2</p>", purpose="choose"),
    Variant(name="on-phone", when={"device": "mobile"}, html="<p>v3</p>", purpose="support"),
    Variant(name="not-us", when={"not": {"country": "US"}}, html="<p>v4</p>", purpose="reward"),
)
CONFIG = make_config(
    site=SiteSettings(languages=LANGUAGES),
    routes=(Route("/", slots=("hero",), shared_links_standard=False),),
    slots={"hero": Slot(variants=VARIANTS)},
    location=LocationSettings(source="header", provider="cloudflare"),
)


async def page(request: Request) -> Response:
    return HTMLResponse(PAGE)


CLIENT = TestClient(
    Starlette(routes=[StarletteRoute("/", page)], middleware=[Middleware(PersonalizeMiddleware, config=CONFIG)])
)


def expected_winner(country: str | None, language: str, referer: str | None, user_agent: str) -> str | None:
    """The first matching variant, decided here without the library."""
    if country in ("AT", "CH") and language == "de":
        return "v1"
    if referer is not None:
        return "v2"
    if user_agent == IPHONE:
        return "v3"
    if country != "US":
        return "v4"
    return None


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(LANGUAGES),
    st.sampled_from(["AT", "CH", "US", "FR", None]),
    st.sampled_from(["https://www.google.com/", "https://duckduckgo.com/", None]),
    st.sampled_from([IPHONE, DESKTOP]),
)
def test_badge_text_and_decision_agree_in_all_six_languages(
    language: str, country: str | None, referer: str | None, user_agent: str
) -> None:
    headers = {"accept-language": f"{language};q=0.9", "user-agent": user_agent}
    if country:
        headers["cf-ipcountry"] = country
    if referer:
        headers["referer"] = referer
    text = CLIENT.get("/", headers=headers).text
    winner = expected_winner(country, language, referer, user_agent)
    if winner is None:
        assert text == PAGE
        return
    assert f"<p>{winner}</p>" in text
    badge = text[text.index("data-personalize-badge") :]
    assert f'lang="{language}"' in badge[:40]
    facts = [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", badge.split("</ul>")[0])]
    gettext = translations(language).gettext
    if winner == "v1":
        assert len(facts) == 2
        assert country_name(country or "", language) in facts[0]
        assert language_name("de", language) in facts[1]
    elif winner == "v2":
        domain = "google.com" if "google" in (referer or "") else "duckduckgo.com"
        assert facts == [gettext("You came from a search engine ({domain}).").format(domain=domain)]
    elif winner == "v3":
        assert facts == [gettext("You are using a phone.")]
    else:
        assert len(facts) == 1
        if country is None:
            assert facts == [gettext("We could not tell which country you are in.")]
        else:
            assert country_name(country, language) in facts[0]
    if language != "en":
        assert gettext("Why am I seeing this?") != "Why am I seeing this?"
        assert f"<summary>{gettext('Why am I seeing this?')}</summary>" in badge


def test_badge_is_a_native_details_element_with_a_plain_summary() -> None:
    text = CLIENT.get("/", headers={"accept-language": "en", "user-agent": IPHONE}).text
    assert '<details class="ep-badge" data-personalize-badge lang="en">' in text
    assert "<summary>Why am I seeing this?</summary>" in text
    assert "<script" not in text and "http://" not in text and "https://" not in text  # no external requests


def test_badge_offers_the_standard_page_the_shared_version_and_the_why_page() -> None:
    text = CLIENT.get("/?a=1", headers={"accept-language": "en", "user-agent": IPHONE}).text
    assert '<a href="/?a=1&amp;personalize=off" rel="nofollow">Show the standard page</a>' in text
    assert '<a href="/?a=1&amp;personalize=shared" rel="nofollow">Share the standard version of this page</a>' in text
    assert '<a href="/_personalize/why?path=%2F&amp;ref=direct" rel="nofollow">Learn more</a>' in text


def test_request_values_in_badge_links_are_escaped() -> None:
    text = CLIENT.get('/?q="><script>alert(1)</script>', headers={"user-agent": IPHONE}).text
    assert "<script>alert(1)</script>" not in text
    assert "q=%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in text


def test_no_badge_on_default_content_or_held_out_views() -> None:
    held_out = make_config(
        routes=(Route("/", slots=("hero",), shared_links_standard=False),),
        slots={"hero": Slot(variants=VARIANTS[:1], holdout=0.999999)},
        site=SiteSettings(languages=LANGUAGES),
        location=LocationSettings(source="header", provider="cloudflare"),
    )
    app = Starlette(routes=[StarletteRoute("/", page)], middleware=[Middleware(PersonalizeMiddleware, config=held_out)])
    text = TestClient(app).get("/", headers={"accept-language": "de", "cf-ipcountry": "AT"}).text
    assert text == PAGE
