"""The message catalogs: complete, in sync with the sources, and used by explanations and the badge."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Formatter

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from jinja2 import Environment, FileSystemLoader

from edge_personalize.explain import PURPOSES
from edge_personalize.i18n import LOCALE_DIR, translations

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("de", "fr", "es", "nl", "it")


def read_catalog(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def template_ids() -> set[str]:
    return {message.id for message in read_catalog(LOCALE_DIR / "messages.pot") if message.id}


def placeholders(text: str) -> list[str]:
    return sorted(name for _, name, _, _ in Formatter().parse(text) if name is not None)


def extracted() -> Iterator[tuple[str, str]]:
    """(file, msgid) for each message in the sources, extracted as `pybabel extract -F babel.cfg` does."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle, "babel.cfg")
    for filename, _, message, _, _ in extract_from_dir(str(ROOT), method_map, options_map):
        yield filename, message if isinstance(message, str) else message[0]


def test_template_matches_the_messages_in_the_sources() -> None:
    # A new or changed string fails here until the commands at the top of babel.cfg are re-run.
    assert {msgid for _, msgid in extracted()} == template_ids()


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalog_translates_every_message_of_the_template(language: str) -> None:
    catalog = read_catalog(LOCALE_DIR / language / "LC_MESSAGES" / "messages.po", language)
    assert not catalog.fuzzy
    translated = {message.id: message for message in catalog if message.id}
    assert set(translated) == template_ids()
    for msgid, message in translated.items():
        assert isinstance(message.string, str)
        assert message.string.strip(), f"{language}: no translation for {msgid!r}"
        assert not message.fuzzy, f"{language}: fuzzy translation for {msgid!r}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_the_placeholders_of_their_source(language: str) -> None:
    catalog = read_catalog(LOCALE_DIR / language / "LC_MESSAGES" / "messages.po", language)
    for message in catalog:
        if not message.id:
            continue
        assert isinstance(message.id, str) and isinstance(message.string, str)
        assert placeholders(message.string) == placeholders(message.id), f"{language}: {message.id!r}"
        # The badge marks translated text safe, so a translation must add no markup.
        for char in "<>&":
            assert message.string.count(char) == message.id.count(char), f"{language}: {message.id!r}"


def test_german_translations_are_used() -> None:
    assert translations("de").gettext("Why am I seeing this?") == "Warum sehe ich das?"


def test_regional_tag_falls_back_to_its_language() -> None:
    assert translations("de-AT").gettext("Why am I seeing this?") == "Warum sehe ich das?"


def test_unknown_language_gets_english() -> None:
    assert translations("ja").gettext("Why am I seeing this?") == "Why am I seeing this?"


@dataclass(frozen=True)
class StubFact:
    text: str


def render_badges(language: str) -> list[str]:
    env = Environment(loader=FileSystemLoader(str(ROOT / "templates")), autoescape=True, extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    template = env.get_template("badge.html")
    return [
        template.render(
            facts=[StubFact("A fact.")],
            purpose=purpose,
            consent=consent,
            standard_url="/?personalize=off",
            why_url="/_personalize/why?path=%2F",
            privacy_url="/privacy",
            include_style=False,
            language=language,
        )
        for purpose in PURPOSES
        for consent in ("granted", "unset")
    ]


def summary(html: str) -> str:
    return html.split("<summary>", 1)[1].split("</summary>", 1)[0]


@pytest.mark.parametrize("language", ["en", *LANGUAGES])
def test_badge_speaks_the_page_language(language: str) -> None:
    pages = render_badges(language)
    badge_ids = {msgid for filename, msgid in extracted() if filename == "templates/badge.html"}
    assert "Why am I seeing this?" in badge_ids
    gettext = translations(language).gettext
    for msgid in badge_ids:
        assert any(gettext(msgid) in page for page in pages), f"{language}: {msgid!r} not rendered"
    if language == "en":
        assert summary(pages[0]) == "Why am I seeing this?"
    else:
        assert summary(pages[0]) != "Why am I seeing this?"
        for msgid in badge_ids:
            assert not any(msgid in page for page in pages), f"{language}: {msgid!r} left in English"
