"""Message catalogs for the visitor-facing text, in the page's language, falling back to English.

Catalogs are gettext `.po` files under `edge_personalize/locale/`, maintained with Babel's
tooling (`pybabel extract` / `update`); they are compiled in memory on first use so the package
needs no build step.
"""

from __future__ import annotations

import gettext
from functools import cache
from io import BytesIO
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"


@cache
def translations(language: str) -> gettext.NullTranslations:
    """Translations for `language` (a tag such as "de" or "de-AT"); English when there are none."""
    for candidate in _candidates(language):
        po = LOCALE_DIR / candidate / "LC_MESSAGES" / f"{DOMAIN}.po"
        if po.is_file():
            with po.open("rb") as handle:
                catalog = read_po(handle, locale=candidate)
            mo = BytesIO()
            write_mo(mo, catalog)
            mo.seek(0)
            return gettext.GNUTranslations(mo)
    return gettext.NullTranslations()


def _candidates(language: str) -> list[str]:
    tag = language.replace("-", "_")
    base = tag.split("_", 1)[0]
    return [tag, base] if base != tag else [tag]


@cache
def cldr_locale(language: str) -> Locale:
    """The CLDR locale used for names (countries, languages) on a page in `language`."""
    try:
        return Locale.parse(language, sep="-" if "-" in language else "_")
    except (ValueError, UnknownLocaleError):
        return Locale("en")


def country_name(code: str, language: str) -> str:
    return str(cldr_locale(language).territories.get(code, code))


@cache
def territories() -> tuple[str, ...]:
    """ISO 3166-1 alpha-2 codes of countries and territories that CLDR names."""
    groupings = {"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"}  # unions, pseudo and unknown regions
    codes = (str(code) for code in Locale("en").territories)
    return tuple(sorted(code for code in codes if len(code) == 2 and code.isalpha() and code not in groupings))


@cache
def country_choices(language: str) -> tuple[tuple[str, str], ...]:
    """Every country as (code, name in `language`), sorted by name: the correction form's list."""
    return tuple(sorted(((code, country_name(code, language)) for code in territories()), key=lambda item: item[1]))
