"""The message catalogs: complete, in sync with the sources, and used by explanations and every template."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from string import Formatter
from typing import Any

import pytest
from babel.dates import format_date
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from jinja2 import Environment, FileSystemLoader

from edge_personalize.consent import Consent
from edge_personalize.explain import PURPOSES, describe, purpose_text, standard_reason_text, stored_text
from edge_personalize.i18n import LOCALE_DIR, cldr_locale, country_name, translations
from edge_personalize.signals.language import language_name

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("de", "fr", "es", "nl", "it")


def read_catalog(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def template_ids() -> set[str]:
    return {message.id for message in read_catalog(LOCALE_DIR / "messages.pot") if message.id}


# A %-conversion: newstyle gettext in the templates formats messages with `%`, so "%%" is a literal percent sign.
PERCENT_FIELD = re.compile(r"%(?:\(\w+\))?[-#0 +]*\d*(?:\.\d+)?[a-zA-Z%]")


def placeholders(text: str, *, python_format: bool = False) -> list[str]:
    """The {name} fields of a message, and its %(name)s fields and %% escapes when it is %-formatted."""
    fields = [f"{{{name}}}" for _, name, _, _ in Formatter().parse(text) if name is not None]
    if python_format:
        fields += [match.group() for match in PERCENT_FIELD.finditer(text)]
    return sorted(fields)


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
        python_format = message.python_format
        expected = placeholders(message.id, python_format=python_format)
        assert placeholders(message.string, python_format=python_format) == expected, f"{language}: {message.id!r}"
        if python_format:
            names = re.findall(r"%\((\w+)\)", message.id)
            message.string % dict.fromkeys(names, "x")  # formats as the template does, without error
        # Newstyle gettext marks translated text safe in the templates, so a translation must add no markup.
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


def environment(language: str) -> Environment:
    env = Environment(loader=FileSystemLoader(str(ROOT / "templates")), autoescape=True, extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    return env


def render_badges(language: str) -> list[str]:
    template = environment(language).get_template("badge.html")
    return [
        template.render(
            facts=[StubFact("A fact.")],
            purpose=purpose_text(purpose, language),
            stored=stored_text(Consent(), language, ""),
            correctable=correctable,
            correct_url="/_personalize/why?path=%2F#correct",
            standard_url="/?personalize=off",
            share_url="/?personalize=shared",
            why_url="/_personalize/why?path=%2F",
            privacy_url="/privacy",
            include_style=False,
            language=language,
        )
        for purpose in PURPOSES
        for correctable in (True, False)
    ]


def render_banners(language: str) -> list[str]:
    template = environment(language).get_template("banner.html")
    values = {"consent_url": "/_personalize/consent", "next": "/?utm_source=x", "privacy_url": "/privacy"}
    return [template.render(language=language, max_age_days=days, **values) for days in (1, 180)]


def why_values(language: str, consent: Consent, *, first_visit: bool) -> dict[str, Any]:
    """The values `endpoints.why()` renders why.html with (see `why.explain_page`), for one visitor."""
    gettext = translations(language).gettext
    german = {"language": ["de", "fr"]}
    phone = {"all": [{"device": "mobile"}, {"not": {"referrer": ["search", "email"]}}]}
    returning = {"any": [{"returning": True}, {"country": "DE"}]}
    hero = {
        "name": "hero",
        "variant": "german-speakers",
        "purpose": "support",
        "purpose_text": purpose_text("support", language),
        "facts": [{"signal": "language", "text": gettext("You are using a phone.")}],
        "holdout": 0.1,
        "alternatives": [
            {"name": name, "when": describe(when, language), "status": status, "why_not": why_not}
            for name, when, status, why_not in [
                ("german-speakers", german, "chosen", []),
                ("phones", phone, "applies", []),
                ("regulars", returning, "needs-consent", []),
                ("spring-sale", {"campaign": "spring"}, "switched-off", []),
                ("searchers", {"referrer": "search"}, "does-not-apply", [gettext("You came from a search engine.")]),
            ]
        ],
    }
    footer: dict[str, Any] = {"name": "footer", "variant": None, "holdout": 0.0, "alternatives": []}
    expires = format_date(consent.expires, format="long", locale=cldr_locale(language)) if consent.expires else ""
    return {
        "path": "/",
        "language": language,
        "personalized": True,
        "standard_reason": None if first_visit else standard_reason_text("shared-link", language),
        "slots": [hero, footer],
        "stored": {"state": consent.state, "stored": consent.stored, "text": stored_text(consent, language, expires)},
        "standard_url": "/?personalize=off",
        "share_url": "/?personalize=shared",
        "can_choose": True,
        "corrections": first_visit,
        "prefix": "/_personalize",
        "privacy_url": "/privacy",
        "back_url": "/",
        "countries": [(code, country_name(code, language)) for code in ("DE", "FR")],
        "languages": [(code, language_name(code, code)) for code in LANGUAGES],
    }


def render_why_pages(language: str) -> list[str]:
    template = environment(language).get_template("why.html")
    granted = Consent(state="granted", expires=datetime(2027, 5, 1, tzinfo=UTC))
    return [
        template.render(why_values(language, Consent(), first_visit=True)),
        template.render(why_values(language, granted, first_visit=False)),
    ]


def literal_parts(text: str) -> list[str]:
    """The text a template message renders around its %(name)s placeholders."""
    return [part.replace("%%", "%") for part in re.split(r"%\(\w+\)s", text) if part.strip()]


def shows(part: str, page: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(part)}(?!\w)", page) is not None


RENDERERS = {"badge.html": render_badges, "banner.html": render_banners, "why.html": render_why_pages}


@pytest.mark.parametrize("language", ["en", *LANGUAGES])
@pytest.mark.parametrize("template", RENDERERS)
def test_template_speaks_the_page_language(template: str, language: str) -> None:
    pages = RENDERERS[template](language)
    ids = {msgid for filename, msgid in extracted() if filename == f"templates/{template}"}
    assert ids
    gettext = translations(language).gettext
    for msgid in ids:
        parts = literal_parts(gettext(msgid))
        assert any(all(part in page for part in parts) for page in pages), f"{language}: {msgid!r} not rendered"
        if language != "en":
            assert gettext(msgid) != msgid, f"{language}: {msgid!r} not translated"
            for part in literal_parts(msgid):
                if re.search("[A-Za-z]{2}", part):
                    assert not any(shows(part, page) for page in pages), f"{language}: {msgid!r} left in English"


def summary(html: str) -> str:
    return html.split("<summary>", 1)[1].split("</summary>", 1)[0]


@pytest.mark.parametrize("language", ["en", *LANGUAGES])
def test_badge_summary_asks_why(language: str) -> None:
    asked = summary(render_badges(language)[0])
    assert asked == translations(language).gettext("Why am I seeing this?")
    assert (asked == "Why am I seeing this?") == (language == "en")


def test_why_page_reads_the_conditions_in_the_page_language() -> None:
    page = render_why_pages("de")[0]
    assert "Sprache ist Deutsch oder Französisch" in page
    assert "nicht (Herkunft ist eine Suchmaschine oder eine E-Mail)" in page
    assert "Abschnitt „hero“" in page
    assert "10\u00a0% aller Aufrufe" in page
