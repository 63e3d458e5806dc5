from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_personalize.signals.language import LanguageNegotiator, language_name, parse_accept_language

SITE = ["en", "de", "fr", "pt", "ja", "zh-Hant", "no"]

# Headers as real browsers send them, with the language the site above should serve.
REAL_BROWSER_HEADERS = [
    # Chrome
    ("de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7", "de"),
    ("en-GB,en-US;q=0.9,en;q=0.8", "en"),
    ("zh-TW,zh;q=0.9,en-US;q=0.8,en;q=0.7", "zh-Hant"),
    ("zh-HK,zh;q=0.9,en-US;q=0.8,en;q=0.7", "zh-Hant"),
    ("zh-CN,zh;q=0.9,en;q=0.8", "en"),
    ("nb-NO,nb;q=0.9,no;q=0.8,nn;q=0.7,en-US;q=0.6,en;q=0.5", "no"),
    ("pt-BR,pt;q=0.9,en-US;q=0.8,en;q=0.7", "pt"),
    ("es-ES,es;q=0.9", None),
    ("es-419,es;q=0.9,en;q=0.8", "en"),
    ("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "en"),
    ("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", "en"),
    ("it-IT,it;q=0.9,en-US;q=0.8,en;q=0.7", "en"),
    ("nl-NL,nl;q=0.9,en-US;q=0.8,en;q=0.7", "en"),
    ("pl-PL,pl;q=0.9,en-US;q=0.8,en;q=0.7", "en"),
    ("ar-SA,ar;q=0.9,en-US;q=0.8,en;q=0.7", "en"),
    ("fr-CA,fr;q=0.9,en-CA;q=0.8,en;q=0.7", "fr"),
    ("de-AT,de;q=0.9,en;q=0.8", "de"),
    ("en-IN,en-GB;q=0.9,en-US;q=0.8,en;q=0.7,hi;q=0.6", "en"),
    ("da-DK,da;q=0.9,en-US;q=0.8,en;q=0.7", "en"),
    # Firefox
    ("en-US,en;q=0.5", "en"),
    ("de,en-US;q=0.7,en;q=0.3", "de"),
    ("fr,fr-FR;q=0.8,en-US;q=0.5,en;q=0.3", "fr"),
    ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", "fr"),
    ("ja,en-US;q=0.7,en;q=0.3", "ja"),
    ("pt-BR,pt;q=0.8,en-US;q=0.5,en;q=0.3", "pt"),
    ("zh-TW,zh;q=0.8,en-US;q=0.5,en;q=0.3", "zh-Hant"),
    ("nb-NO,nb;q=0.9,no-NO;q=0.8,no;q=0.6,nn-NO;q=0.5,nn;q=0.4,en-US;q=0.3,en;q=0.1", "no"),
    ("tr-TR,tr;q=0.8,en-US;q=0.5,en;q=0.3", "en"),
    # Safari (macOS, iOS; older versions send a single lowercase tag)
    ("en-us", "en"),
    ("ja", "ja"),
    ("en-US,en;q=0.9", "en"),
    ("ja-JP,ja;q=0.9", "ja"),
    ("en-AU,en;q=0.9", "en"),
    ("pt-PT,pt;q=0.9", "pt"),
    ("de-de", "de"),
    ("zh-TW,zh-Hant;q=0.9", "zh-Hant"),
    # Edge
    ("de,de-DE;q=0.9,en;q=0.8,en-GB;q=0.7,en-US;q=0.6", "de"),
    ("de-CH,de;q=0.9,en;q=0.8,fr;q=0.7", "de"),
    ("he-IL,he;q=0.9,en-US;q=0.8,en;q=0.7", "en"),
]


@pytest.mark.parametrize(("header", "expected"), REAL_BROWSER_HEADERS)
def test_real_browser_header_negotiates_to_site_language(header: str, expected: str | None) -> None:
    assert LanguageNegotiator(SITE).negotiate(header) == expected


@pytest.mark.parametrize(
    ("header", "available", "expected"),
    [
        ("en-GB,en-US;q=0.9,en;q=0.8", ["en-US", "en-GB"], "en-GB"),
        ("en-US,en;q=0.9", ["en-GB", "en-US"], "en-US"),
        ("en-AU,en;q=0.9", ["en-US", "en-GB"], "en-GB"),
        ("es-MX,es;q=0.9,en;q=0.8", ["es", "es-419", "en"], "es-419"),
        ("pt-BR,pt;q=0.9", ["pt-PT", "pt-BR"], "pt-BR"),
        ("pt", ["pt-PT", "pt-BR"], "pt-BR"),
        ("zh-TW,zh;q=0.9,en-US;q=0.8,en;q=0.7", ["en", "zh-TW", "zh-CN"], "zh-TW"),
        ("zh-CN,zh;q=0.9,en;q=0.8", ["en", "zh-TW", "zh-CN"], "zh-CN"),
        ("nb-NO,nb;q=0.9,no;q=0.8,nn;q=0.7,en-US;q=0.6,en;q=0.5", ["en", "nb"], "nb"),
    ],
)
def test_real_browser_header_against_regional_site_languages(header: str, available: list[str], expected: str) -> None:
    assert LanguageNegotiator(available).negotiate(header) == expected


def test_austrian_german_falls_back_to_german() -> None:
    assert LanguageNegotiator(["en", "de"]).negotiate("de-AT") == "de"


def test_brazilian_portuguese_falls_back_to_portuguese() -> None:
    assert LanguageNegotiator(["en", "pt"]).negotiate("pt-BR") == "pt"


def test_traditional_chinese_in_taiwan_gets_the_sites_traditional_chinese() -> None:
    assert LanguageNegotiator(["en", "zh-Hant"]).negotiate("zh-Hant-TW") == "zh-Hant"


def test_traditional_chinese_in_taiwan_gets_the_sites_taiwanese_chinese() -> None:
    assert LanguageNegotiator(["en", "zh-TW"]).negotiate("zh-Hant-TW") == "zh-TW"


def test_hong_kong_chinese_is_inferred_to_be_traditional() -> None:
    assert LanguageNegotiator(["en", "zh-Hans", "zh-Hant"]).negotiate("zh-HK") == "zh-Hant"


def test_simplified_chinese_reader_is_not_served_traditional() -> None:
    assert LanguageNegotiator(["zh-Hant"]).negotiate("zh-CN") is None
    assert LanguageNegotiator(["zh-Hant"]).negotiate("zh") is None


def test_bokmal_reader_gets_the_sites_norwegian() -> None:
    assert LanguageNegotiator(["en", "no"]).negotiate("nb") == "no"


def test_norwegian_reader_gets_the_sites_bokmal() -> None:
    assert LanguageNegotiator(["en", "nb"]).negotiate("no") == "nb"


def test_bokmal_prefers_norwegian_over_nynorsk() -> None:
    assert LanguageNegotiator(["nn", "no"]).negotiate("nb") == "no"


def test_deprecated_hebrew_code_still_matches() -> None:
    assert LanguageNegotiator(["en", "he"]).negotiate("iw") == "he"


def test_serbian_scripts_are_not_interchangeable() -> None:
    assert LanguageNegotiator(["sr-Latn"]).negotiate("sr-RS") is None
    assert LanguageNegotiator(["sr", "sr-Latn"]).negotiate("sr-ME") == "sr-Latn"


def test_regional_variant_prefers_generic_language_over_another_region() -> None:
    assert LanguageNegotiator(["de-AT", "de"]).negotiate("de-CH") == "de"


@pytest.mark.parametrize("header", ["DE-at", "de_AT", "de_at", " de-AT ", "De-At;Q=1"])
def test_tags_are_case_and_separator_insensitive(header: str) -> None:
    assert LanguageNegotiator(["en", "de-AT"]).negotiate(header) == "de-AT"


def test_result_uses_the_sites_configured_spelling() -> None:
    assert LanguageNegotiator(["en", "zh_hant"]).negotiate("zh-HK") == "zh_hant"
    assert LanguageNegotiator(["EN-us"]).negotiate("en-US") == "EN-us"


def test_browser_order_wins_over_site_order() -> None:
    assert LanguageNegotiator(["en", "fr", "de"]).negotiate("de,fr;q=0.9,en;q=0.8") == "de"


def test_first_acceptable_preference_wins_even_as_a_fallback() -> None:
    assert LanguageNegotiator(["en", "de"]).negotiate("de-CH,en;q=0.9") == "de"


def test_higher_quality_wins_regardless_of_position() -> None:
    assert LanguageNegotiator(["en", "fr"]).negotiate("en;q=0.2,fr;q=0.8") == "fr"


def test_explicitly_refused_language_is_not_used_as_a_fallback() -> None:
    assert LanguageNegotiator(["en", "de"]).negotiate("en-GB,en;q=0,de;q=0.5") == "de"


def test_nothing_acceptable_means_no_preference() -> None:
    assert LanguageNegotiator(["en", "de"]).negotiate("ko-KR,ko;q=0.9") is None


@pytest.mark.parametrize("header", [None, "", " ", ","])
def test_missing_or_empty_header_means_no_preference(header: str | None) -> None:
    assert LanguageNegotiator(SITE).negotiate(header) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("*", None),
        ("*;q=0.5", None),
        ("<script>alert(1)</script>", None),
        ("de\x00", None),
        ("\x00\x00\x00", None),
        ("de-\x1bAT,fr;q=0.5", "fr"),
        ("de;q=2,fr;q=0.5", "fr"),
        ("de;q=abc,fr", "fr"),
        ("de;q=-1,fr", "fr"),
        ("de;q=0.12345,fr", "fr"),
        ("de;q=,fr", "fr"),
        ("de;level=1,fr", "fr"),
        ("de;;q=1,fr", "fr"),
        ("averyveryverylongtag,fr", "fr"),
        ("x-klingon,i-default,und,en;q=0.1", "en"),
        ("en-US-u-ca-gregory", "en"),
        (";;;,,,===", None),
        ("de\u00e9,fr;q=0.1", "fr"),
        ("\ud800", None),
        ("q=1", None),
        ("en" * 40, None),
    ],
)
def test_hostile_or_malformed_header_never_raises(header: str, expected: str | None) -> None:
    assert LanguageNegotiator(SITE).negotiate(header) == expected


_HEADER_ALPHABET = st.sampled_from([*"abzAZ-_;=q.01 ,*\t\x00\u00e9", "de", "en-GB", "zh-Hant", "nb", ";q=0.5"])


@settings(database=None, max_examples=300)
@given(st.one_of(st.text(max_size=200), st.lists(_HEADER_ALPHABET, max_size=60).map("".join)))
def test_any_header_yields_a_site_language_or_none(header: str) -> None:
    assert LanguageNegotiator(SITE).negotiate(header) in [*SITE, None]
    assert all(isinstance(tag, str) and tag for tag in parse_accept_language(header))


def test_64_kb_header_is_capped_not_refused() -> None:
    header = "de-DE,de;q=0.9," + ",".join(["xx-XX;q=0.5"] * 6000)
    assert len(header) > 64_000
    assert LanguageNegotiator(SITE).negotiate(header) == "de"


def test_64_kb_single_garbage_entry_means_no_preference() -> None:
    assert LanguageNegotiator(SITE).negotiate("a" * 65_536) is None


def test_entries_beyond_the_cap_are_ignored() -> None:
    header = ",".join(["ko"] * 60) + ",de"
    assert LanguageNegotiator(SITE).negotiate(header) is None


def test_repeated_header_is_answered_from_the_cache() -> None:
    negotiator = LanguageNegotiator(SITE)
    assert negotiator.negotiate("de-AT,de;q=0.9") == "de"
    assert negotiator.negotiate("de-AT,de;q=0.9") == "de"
    info = negotiator._cached.cache_info()  # type: ignore[attr-defined]
    assert (info.hits, info.misses) == (1, 1)


def test_cache_is_bounded() -> None:
    negotiator = LanguageNegotiator(SITE, cache_size=8)
    for index in range(100):
        negotiator.negotiate(f"de;q=0.{index % 10},x-{index}")
    assert negotiator._cached.cache_info().currsize == 8  # type: ignore[attr-defined]


def test_configured_language_that_is_not_a_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="not a language tag: 'english!'"):
        LanguageNegotiator(["en", "english!"])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7", ["de-DE", "de", "en-US", "en"]),
        ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", ["fr-CH", "fr", "en", "de"]),
        ("en;q=0.5,de,fr;q=0.5", ["de", "en", "fr"]),
        ("en-us,EN-US;q=0.5", ["en-US"]),
        ("zh_hant_tw", ["zh-Hant-TW"]),
        ("es-419", ["es-419"]),
        ("de;q=0,fr", ["fr"]),
        ("de;q=1.000,fr;q=1.0", ["de", "fr"]),
        ("", []),
        (None, []),
    ],
)
def test_parse_accept_language(header: str | None, expected: list[str]) -> None:
    assert parse_accept_language(header) == expected


@pytest.mark.parametrize(
    ("code", "in_language", "expected"),
    [
        ("de", "en", "German"),
        ("de", "fr", "allemand"),
        ("de", "de", "Deutsch"),
        ("ja", "en", "Japanese"),
        ("pt-BR", "en", "Portuguese (Brazil)"),
        ("zh-Hant", "en", "Chinese (Traditional)"),
        ("fr", "de-AT", "Französisch"),
        ("xx", "en", "xx"),
        ("de", "xx", "de"),
        ("<b>", "en", "<b>"),
        ("", "en", ""),
    ],
)
def test_language_name(code: str, in_language: str, expected: str) -> None:
    assert language_name(code, in_language) == expected
