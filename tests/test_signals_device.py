from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_personalize.signals import device as device_module
from edge_personalize.signals.device import Device, classify_device

MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Safari/605.1.15"
)
MAC_CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
ANDROID_TABLET_CHROME = (
    "Mozilla/5.0 (Linux; Android 12; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/110.0.0.0 Safari/537.36"
)
PIXEL_CHROME = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36"
)

BROWSERS = [
    # Phones
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Mobile/15E148 Safari/604.1",
        "mobile",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        "mobile",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "FxiOS/120.0 Mobile/15E148 Safari/605.1.15",
        "mobile",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 [FBAN/FBIOS;FBAV/449.0.0.39.108;FBBV/573587592;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;"
        "FBSV/17.3.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
        "mobile",
    ),
    (PIXEL_CHROME, "mobile"),
    (
        "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/116.0.0.0 Mobile Safari/537.36",
        "mobile",
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/112.0.0.0 Mobile Safari/537.36",
        "mobile",
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/21.0 Chrome/110.0.5481.154 Mobile Safari/537.36",
        "mobile",
    ),
    ("Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0", "mobile"),
    (
        "Mozilla/5.0 (Linux; Android 10; VOG-L29) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36 OPR/79.1.4195.76505",
        "mobile",
    ),
    (
        "Mozilla/5.0 (Linux; Android 11; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/114.0.0.0 Mobile Safari/537.36",
        "mobile",
    ),
    # Tablets
    (ANDROID_TABLET_CHROME, "tablet"),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "tablet",
    ),
    (
        "Mozilla/5.0 (Linux; Android 12; SAMSUNG SM-X906C) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/19.0 Chrome/102.0.5005.125 Safari/537.36",
        "tablet",
    ),
    (
        "Mozilla/5.0 (Linux; Android 11; Lenovo TB-J606F) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/96.0.4664.104 Safari/537.36",
        "tablet",
    ),
    (
        "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/122.4.1 "
        "like Chrome/122.0.6261.119 Safari/537.36",
        "tablet",
    ),
    ("Mozilla/5.0 (Android 13; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0", "tablet"),
    (
        "Mozilla/5.0 (iPad; CPU OS 12_5_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/12.1.2 Mobile/15E148 Safari/604.1",
        "tablet",
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        "tablet",
    ),
    # iPadOS Safari and Mac Safari send the same UA
    (MAC_SAFARI, "unknown"),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Safari/605.1.15",
        "unknown",
    ),
    # Desktops
    (MAC_CHROME, "desktop"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0", "desktop"),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
        "desktop",
    ),
    (WINDOWS_CHROME, "desktop"),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
        "desktop",
    ),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", "desktop"),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
        "desktop",
    ),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "desktop"),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0", "desktop"),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "desktop",
    ),
    (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "desktop",
    ),
]

BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) "
    "Chrome/124.0.6367.155 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.155 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.155 Mobile Safari/537.36 (compatible; Google-InspectionTool/1.0;)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) "
    "Chrome/116.0.1938.76 Safari/537.36",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 "
    "Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; GPTBot/1.0; +https://openai.com/gptbot",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "TelegramBot (like TwitterBot)",
    "WhatsApp/2.23.20.0 A",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 "
    "Safari/537.36",
]


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    device_module._cache.clear()


@pytest.mark.parametrize(("user_agent", "expected"), BROWSERS)
def test_real_browser_user_agent_is_classified(user_agent: str, expected: str) -> None:
    assert classify_device(user_agent) == Device(expected, is_bot=False, source="user agent")  # type: ignore[arg-type]


@pytest.mark.parametrize("user_agent", BOTS)
def test_crawlers_are_bots_without_a_device(user_agent: str) -> None:
    assert classify_device(user_agent) == Device("unknown", is_bot=True, source="user agent")


@pytest.mark.parametrize("hint", ["?1", "?0"])
def test_client_hints_do_not_turn_a_bot_into_a_visitor(hint: str) -> None:
    assert classify_device(BOTS[0], hint).is_bot


def test_ipad_in_desktop_mode_is_not_called_a_desktop() -> None:
    assert classify_device(MAC_SAFARI).kind == "unknown"


def test_mobile_client_hint_wins_over_a_desktop_looking_user_agent() -> None:
    assert classify_device(WINDOWS_CHROME, "?1") == Device("mobile", is_bot=False, source="client hints")


def test_not_mobile_client_hint_with_mac_user_agent_is_desktop() -> None:
    assert classify_device(MAC_CHROME, "?0") == Device("desktop", is_bot=False, source="client hints")
    assert classify_device(MAC_SAFARI, "?0") == Device("desktop", is_bot=False, source="client hints")


def test_not_mobile_client_hint_keeps_a_tablet_the_user_agent_recognises() -> None:
    assert classify_device(ANDROID_TABLET_CHROME, "?0") == Device("tablet", is_bot=False, source="client hints")


def test_not_mobile_client_hint_on_a_phone_requesting_the_desktop_site_is_desktop() -> None:
    assert classify_device(PIXEL_CHROME, "?0").kind == "desktop"


@pytest.mark.parametrize("hint", [None, "", "?2", "1", "true", "?1?1", "\x00", "x" * 10_000])
def test_malformed_client_hint_falls_back_to_the_user_agent(hint: str | None) -> None:
    assert classify_device(PIXEL_CHROME, hint) == Device("mobile", is_bot=False, source="user agent")


def test_client_hint_tolerates_surrounding_whitespace() -> None:
    assert classify_device(WINDOWS_CHROME, " ?1 ").kind == "mobile"


@pytest.mark.parametrize("user_agent", [None, "", "   ", "\t"])
def test_missing_user_agent_is_unknown(user_agent: str | None) -> None:
    assert classify_device(user_agent) == Device("unknown", is_bot=False, source="none")
    assert classify_device(user_agent, "?1") == Device("unknown", is_bot=False, source="none")


@pytest.mark.parametrize(
    "user_agent",
    [
        "asdf",
        "<script>alert(1)</script>",
        "\x00" * 100,
        "Mozilla/5.0 (\x00iPhone\x00)",
        "\ud800\udfff\ud800",
        "Mozilla/5.0 " + "(" * 5000,
        "A" * 65_536,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) " + "é" * 65_536,
        "\u202e\u200b\ufeff",
    ],
)
def test_hostile_user_agent_never_raises(user_agent: str) -> None:
    result = classify_device(user_agent)
    assert result.kind in {"mobile", "tablet", "desktop", "unknown"}
    assert result.source == "user agent"


@settings(database=None, max_examples=200)
@given(st.one_of(st.none(), st.text(max_size=300)), st.one_of(st.none(), st.text(max_size=10)))
def test_any_input_yields_a_device(user_agent: str | None, hint: str | None) -> None:
    result = classify_device(user_agent, hint)
    assert result.kind in {"mobile", "tablet", "desktop", "unknown"}
    assert not (result.is_bot and result.kind != "unknown")


def test_oversized_user_agent_is_judged_by_its_first_512_characters() -> None:
    assert classify_device(PIXEL_CHROME + " " + "x" * 65_536).kind == "mobile"


def test_device_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        classify_device(PIXEL_CHROME).kind = "desktop"  # type: ignore[misc]


def test_cache_holds_digests_not_user_agents() -> None:
    classify_device(PIXEL_CHROME)
    keys = list(device_module._cache._entries)
    assert len(keys) == 1
    assert isinstance(keys[0], bytes)
    assert len(keys[0]) == 16
    assert PIXEL_CHROME.encode() not in keys


def test_cache_is_bounded() -> None:
    for index in range(device_module.CACHE_SIZE + 100):
        classify_device(f"curl/{index}")
    assert len(device_module._cache) == device_module.CACHE_SIZE


def test_cached_answer_matches_the_first() -> None:
    first = classify_device(ANDROID_TABLET_CHROME)
    assert classify_device(ANDROID_TABLET_CHROME) == first
    assert classify_device(ANDROID_TABLET_CHROME, "?1").kind == "mobile"


@pytest.mark.parametrize("user_agent", ["curl/8.5.0", "python-requests/2.31.0", "Wget/1.21.4", "Go-http-client/2.0"])
def test_command_line_clients_are_not_crawlers(user_agent: str) -> None:
    device = classify_device(user_agent)
    assert device.is_bot is False
    assert device.kind == "unknown"
