"""The visitor's language: Accept-Language negotiated against the languages the site serves."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from babel.core import Locale, UnknownLocaleError, get_global

__all__ = ["LanguageNegotiator", "language_name", "parse_accept_language"]

# Real browsers send well under 200 characters and a dozen entries; anything beyond the caps
# is cut rather than refused, so a bloated header still yields its leading preferences.
MAX_HEADER_LENGTH = 4096
MAX_ENTRIES = 50

# BCP 47 shape only (language, then up to eight-character subtags); the meaning of each
# subtag comes from Babel's CLDR data below.
_TAG = re.compile(r"[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*")
_QVALUE = re.compile(r"[qQ][ \t]*=[ \t]*(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")
_OWS = " \t"


def _cap(header: str) -> str:
    if len(header) <= MAX_HEADER_LENGTH:
        return header
    # The entry straddling the cut is incomplete, so it goes too.
    return header[:MAX_HEADER_LENGTH].rpartition(",")[0]


def _canonical(tag: str) -> str:
    subtags = tag.replace("_", "-").lower().split("-")
    out = [subtags[0]]
    for index, subtag in enumerate(subtags[1:], start=1):
        if len(subtags[index - 1]) == 1:
            # After a singleton (x-, u-) everything is an opaque extension.
            out.extend(subtags[index:])
            break
        if len(subtag) == 4 and subtag.isalpha():
            out.append(subtag.title())
        elif len(subtag) == 2 or (len(subtag) == 3 and subtag.isdigit()):
            out.append(subtag.upper())
        else:
            out.append(subtag)
    return "-".join(out)


def _weighted(header: str) -> list[tuple[str, float]]:
    entries: list[tuple[str, float]] = []
    for raw in _cap(header).split(",")[:MAX_ENTRIES]:
        tag, *params = (part.strip(_OWS) for part in raw.split(";"))
        if tag != "*" and not _TAG.fullmatch(tag):
            continue
        if len(params) > 1:
            continue
        quality = 1.0
        if params:
            match = _QVALUE.fullmatch(params[0])
            if match is None:
                continue
            quality = float(match.group(1))
        entries.append((tag if tag == "*" else _canonical(tag), quality))
    return entries


def _ranked(entries: list[tuple[str, float]]) -> list[str]:
    ranked = sorted(entries, key=lambda entry: -entry[1])
    seen: set[str] = set()
    tags: list[str] = []
    for tag, quality in ranked:
        if quality > 0 and tag != "*" and tag not in seen:
            seen.add(tag)
            tags.append(tag)
    return tags


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags the browser asks for, best first (q-values honoured, q=0 dropped, '*' dropped, stable for ties).

    Tags come back in canonical case with '-' separators (``en-us`` -> ``en-US``), each once.
    """
    return _ranked(_weighted(header)) if header else []


@dataclass(frozen=True, slots=True)
class _Language:
    """A tag reduced to what matching needs, with CLDR's likely subtags filled in."""

    language: str
    family: str
    script: str | None
    territory: str | None
    explicit_territory: bool
    regions: frozenset[str]


def _split(tag: str) -> tuple[str, str | None, str | None] | None:
    subtags = tag.split("-")
    language = subtags[0].lower()
    # Singletons (x-, i-) are private or grandfathered and 'und' is "undetermined": none of
    # them names a language CLDR could widen, so they match only their exact spelling.
    if not 2 <= len(language) <= 3 or language == "und":
        return None
    script: str | None = None
    territory: str | None = None
    for subtag in subtags[1:]:
        if len(subtag) == 1:
            break
        if script is None and territory is None and len(subtag) == 4 and subtag.isalpha():
            script = subtag.title()
        elif territory is None and ((len(subtag) == 2 and subtag.isalpha()) or (len(subtag) == 3 and subtag.isdigit())):
            territory = subtag.upper()
    return language, script, territory


@functools.lru_cache(maxsize=4096)
def _describe(tag: str) -> _Language | None:
    parts = _split(tag)
    if parts is None:
        return None
    language, script, territory = parts
    explicit_territory = territory is not None

    # Deprecated codes browsers still send (iw -> he, in -> id, sh -> sr_Latn).
    aliases: Mapping[str, str] = get_global("language_aliases")
    alias = aliases.get(language)
    if alias:
        alias_language, _, rest = alias.partition("_")
        language = alias_language
        for subtag in filter(None, rest.split("_")):
            if len(subtag) == 4 and script is None:
                script = subtag
            elif len(subtag) != 4 and territory is None:
                territory = subtag

    likely: Mapping[str, str] = get_global("likely_subtags")
    for key in filter(
        None,
        (
            script and territory and f"{language}_{script}_{territory}",
            territory and f"{language}_{territory}",
            script and f"{language}_{script}",
            language,
        ),
    ):
        if key in likely:
            _, likely_script, likely_territory = likely[key].split("_")
            script = script or likely_script
            territory = territory or likely_territory
            break

    parents: Mapping[str, str] = get_global("parent_exceptions")
    # CLDR's parent locales double as linguistic groups: nb and nn fall back to no, en-AU and
    # en-GB to en-001, es-MX to es-419. Only parents that are a bare language count as the same
    # language (ht -> fr-HT is a data fallback, not French).
    family = parents.get(language, language)
    if "_" in family:
        family = language
    regions: set[str] = set()
    if territory is not None:
        pending = [f"{language}_{territory}"] + ([f"{language}_{script}_{territory}"] if script else [])
        while pending:
            current = pending.pop()
            if current not in regions:
                regions.add(current)
                parent = parents.get(current)
                if parent is not None and "_" in parent:
                    pending.append(parent)
    return _Language(language, family, script, territory, explicit_territory, frozenset(regions))


def _closeness(wanted: _Language, offered: _Language) -> tuple[int, int] | None:
    """How far `offered` is from what was asked for, or None when it would not be understood."""
    if wanted.language == offered.language:
        language_distance = 0
    elif offered.language == wanted.family or wanted.language == offered.family:
        language_distance = 1
    elif wanted.family == offered.family:
        language_distance = 2
    else:
        return None
    # A reader of Traditional Chinese is not served Simplified (nor Serbian Latin as Cyrillic):
    # a script mismatch is not a fallback but a different language for the reader.
    if wanted.script != offered.script:
        return None
    if wanted.territory == offered.territory:
        territory_distance = 0
    elif wanted.regions & offered.regions:
        territory_distance = 1
    elif not offered.explicit_territory:
        territory_distance = 2
    else:
        territory_distance = 3
    return language_distance, territory_distance


class LanguageNegotiator:
    """Chooses one of the site's languages for an Accept-Language header."""

    def __init__(self, available: Sequence[str], *, cache_size: int = 1024) -> None:
        offers: list[tuple[str, str, _Language | None]] = []
        for spelling in available:
            if not _TAG.fullmatch(spelling):
                raise ValueError(f"not a language tag: {spelling!r} (expected e.g. 'en', 'de-AT', 'zh-Hant')")
            canonical = _canonical(spelling)
            offers.append((spelling, canonical, _describe(canonical)))
        self._offers = tuple(offers)
        self._exact = {canonical: spelling for spelling, canonical, _ in reversed(offers)}
        # Bounded per negotiator, keyed by the capped header so a hostile header costs at most
        # MAX_HEADER_LENGTH characters of memory per entry.
        self._cached: Callable[[str], str | None] = functools.lru_cache(maxsize=cache_size)(self._negotiate)

    def negotiate(self, header: str | None) -> str | None:
        """One of the site's languages in its configured spelling, or None for no acceptable preference."""
        if not header:
            return None
        return self._cached(_cap(header))

    def _negotiate(self, header: str) -> str | None:
        entries = _weighted(header)
        # q=0 is an explicit "not this one", which also rules the tag out as someone else's fallback.
        refused = {tag for tag, quality in entries if quality == 0}
        for tag in _ranked(entries):
            choice = self._best(tag, refused)
            if choice is not None:
                return choice
        return None

    def _best(self, tag: str, refused: set[str]) -> str | None:
        exact = self._exact.get(tag)
        if exact is not None:
            return exact
        wanted = _describe(tag)
        if wanted is None:
            return None
        best: tuple[tuple[int, int], str] | None = None
        for spelling, canonical, offered in self._offers:
            if offered is None or canonical in refused:
                continue
            closeness = _closeness(wanted, offered)
            # Strictly better only: among equals the site's own order decides.
            if closeness is not None and (best is None or closeness < best[0]):
                best = closeness, spelling
        return None if best is None else best[1]


@functools.lru_cache(maxsize=512)
def language_name(code: str, in_language: str) -> str:
    """The CLDR display name of `code` written in `in_language` ("de", "fr" -> "allemand"); `code` if unknown."""
    try:
        locale = Locale.parse(code.replace("-", "_"))
        name = locale.get_display_name(Locale.parse(in_language.replace("-", "_")))
    except (ValueError, TypeError, UnknownLocaleError):
        return code
    return name or code
