"""Conditions as data: the same objects decide, explain themselves and describe the policy.

A condition never runs site code. It reads reduced signals from a `VisitorContext` and, when it
matches, names the facts that made it match; the badge, the why page and policy.json all read
those same facts, so an explanation cannot drift from the decision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from edge_personalize.errors import ConfigError
from edge_personalize.explain import Fact, fact
from edge_personalize.i18n import territories

if TYPE_CHECKING:
    from edge_personalize.context import VisitorContext

__all__ = [
    "SIGNALS",
    "All",
    "AnyOf",
    "Campaign",
    "City",
    "Condition",
    "Country",
    "Device",
    "Language",
    "Not",
    "Referrer",
    "ReferrerDomain",
    "Region",
    "Returning",
    "parse_condition",
]

REFERRER_CATEGORIES = ("search", "social", "email", "campaign", "internal", "other", "direct")
DEVICE_CLASSES = ("mobile", "tablet", "desktop")
_TERRITORIES = frozenset(territories())
_REGION = re.compile(r"[A-Z]{2}-[A-Z0-9]{1,3}")
_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_CAMPAIGN = re.compile(r"[A-Za-z0-9 _.-]{1,64}")


class Condition(Protocol):
    @property
    def signals(self) -> frozenset[str]: ...

    def matches(self, ctx: VisitorContext) -> bool: ...

    def explain(self, ctx: VisitorContext, language: str) -> list[Fact]:
        """The facts that made this condition match (call only when it matched)."""
        ...

    def why_not(self, ctx: VisitorContext, language: str) -> list[Fact]:
        """The facts that kept this condition from matching (call only when it did not)."""
        ...

    def to_data(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class _Leaf:
    """A test of one signal against a set of allowed values."""

    key: ClassVar[str]
    values: tuple[str, ...]

    @property
    def signals(self) -> frozenset[str]:
        return frozenset((self.key,))

    def observed(self, ctx: VisitorContext) -> str | None:
        raise NotImplementedError

    def matches(self, ctx: VisitorContext) -> bool:
        return self.observed(ctx) in self.values

    def explain(self, ctx: VisitorContext, language: str) -> list[Fact]:
        return [fact(self.key, ctx, language)]

    why_not = explain

    def to_data(self) -> Any:
        return {self.key: list(self.values) if len(self.values) > 1 else self.values[0]}


class Language(_Leaf):
    key = "language"

    def observed(self, ctx: VisitorContext) -> str | None:
        return ctx.language


class Country(_Leaf):
    key = "country"

    def observed(self, ctx: VisitorContext) -> str | None:
        return ctx.location.country


class Region(_Leaf):
    key = "region"

    def observed(self, ctx: VisitorContext) -> str | None:
        location = ctx.location
        if location.country is None or location.region is None:
            return None
        return f"{location.country}-{location.region}"


class City(_Leaf):
    key = "city"

    def observed(self, ctx: VisitorContext) -> str | None:
        city = ctx.location.city
        return city.casefold() if city else None

    def matches(self, ctx: VisitorContext) -> bool:
        return self.observed(ctx) in {value.casefold() for value in self.values}


class Referrer(_Leaf):
    key = "referrer"

    def observed(self, ctx: VisitorContext) -> str | None:
        return ctx.referral.category


class ReferrerDomain(_Leaf):
    key = "referrer_domain"

    def observed(self, ctx: VisitorContext) -> str | None:
        return ctx.referral.domain


class Campaign(_Leaf):
    key = "campaign"

    def observed(self, ctx: VisitorContext) -> str | None:
        return ctx.referral.campaign


class Device(_Leaf):
    key = "device"

    def observed(self, ctx: VisitorContext) -> str | None:
        return ctx.device.kind


@dataclass(frozen=True, slots=True)
class Returning:
    value: bool

    @property
    def signals(self) -> frozenset[str]:
        return frozenset(("returning",))

    def matches(self, ctx: VisitorContext) -> bool:
        returning = ctx.returning
        return returning is not None and returning == self.value

    def explain(self, ctx: VisitorContext, language: str) -> list[Fact]:
        return [fact("returning", ctx, language)]

    why_not = explain

    def to_data(self) -> Any:
        return {"returning": self.value}


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Condition, ...]

    @property
    def signals(self) -> frozenset[str]:
        return frozenset().union(*(item.signals for item in self.items))

    def matches(self, ctx: VisitorContext) -> bool:
        return all(item.matches(ctx) for item in self.items)

    def explain(self, ctx: VisitorContext, language: str) -> list[Fact]:
        return _unique(f for item in self.items for f in item.explain(ctx, language))

    def why_not(self, ctx: VisitorContext, language: str) -> list[Fact]:
        # The first part that failed is the one that decided.
        return next((item.why_not(ctx, language) for item in self.items if not item.matches(ctx)), [])

    def to_data(self) -> Any:
        return {"all": [item.to_data() for item in self.items]}


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]

    @property
    def signals(self) -> frozenset[str]:
        return frozenset().union(*(item.signals for item in self.items))

    def matches(self, ctx: VisitorContext) -> bool:
        return any(item.matches(ctx) for item in self.items)

    def explain(self, ctx: VisitorContext, language: str) -> list[Fact]:
        # The first alternative that matched is the one that decided.
        return next((item.explain(ctx, language) for item in self.items if item.matches(ctx)), [])

    def why_not(self, ctx: VisitorContext, language: str) -> list[Fact]:
        return _unique(f for item in self.items for f in item.why_not(ctx, language))

    def to_data(self) -> Any:
        return {"any": [item.to_data() for item in self.items]}


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition

    @property
    def signals(self) -> frozenset[str]:
        return self.item.signals

    def matches(self, ctx: VisitorContext) -> bool:
        return not self.item.matches(ctx)

    def explain(self, ctx: VisitorContext, language: str) -> list[Fact]:
        return self.item.why_not(ctx, language)

    def why_not(self, ctx: VisitorContext, language: str) -> list[Fact]:
        return self.item.explain(ctx, language)

    def to_data(self) -> Any:
        return {"not": self.item.to_data()}


def _unique(facts: Any) -> list[Fact]:
    seen: dict[str, Fact] = {}
    for item in facts:
        seen.setdefault(item.signal, item)
    return list(seen.values())


SIGNALS = (
    "language",
    "country",
    "region",
    "city",
    "referrer",
    "referrer_domain",
    "campaign",
    "device",
    "returning",
)
_COMBINATORS = ("all", "any", "not")
_LEAVES: dict[str, type[_Leaf]] = {
    cls.key: cls for cls in (Language, Country, Region, City, Referrer, ReferrerDomain, Campaign, Device)
}


def parse_condition(data: object, path: str, *, languages: Sequence[str], allow_precise: bool) -> Condition:
    """Build a condition from its TOML form; raises ConfigError naming `path` and the fix."""
    if isinstance(data, (All, AnyOf, Not, Returning, _Leaf)):
        return data
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f'{path}: a condition is a table such as {{ language = "de" }}')
    items: list[Condition] = []
    for key, value in data.items():
        here = f"{path}.{key}"
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{here}: expected a non-empty list of conditions")
            parts = tuple(
                parse_condition(item, f"{here}[{i}]", languages=languages, allow_precise=allow_precise)
                for i, item in enumerate(value)
            )
            items.append(All(parts) if key == "all" else AnyOf(parts))
        elif key == "not":
            items.append(Not(parse_condition(value, here, languages=languages, allow_precise=allow_precise)))
        elif key == "returning":
            if not isinstance(value, bool):
                raise ConfigError(f"{here}: expected true or false")
            items.append(Returning(value))
        elif key in _LEAVES:
            values = _leaf_values(key, value, here, languages, allow_precise)
            items.append(_LEAVES[key](values))
        else:
            hint = get_close_matches(str(key), [*SIGNALS, *_COMBINATORS], n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"{path}: unknown signal '{key}'{suggestion}")
    return items[0] if len(items) == 1 else All(tuple(items))


def _leaf_values(key: str, value: object, path: str, languages: Sequence[str], allow_precise: bool) -> tuple[str, ...]:
    raw = value if isinstance(value, list) else [value]
    if not raw or not all(isinstance(item, str) and item for item in raw):
        raise ConfigError(f"{path}: expected a string or a non-empty list of strings")
    values: list[str] = [str(item) for item in raw]
    if key == "language":
        for item in values:
            if item not in languages:
                raise ConfigError(f"{path}: '{item}' is not one of site.languages {list(languages)}")
    elif key == "country":
        values = [item.upper() for item in values]
        for item in values:
            if item not in _TERRITORIES:
                raise ConfigError(f"{path}: '{item}' is not an ISO 3166-1 alpha-2 country code")
    elif key == "region":
        values = [item.upper() for item in values]
        for item in values:
            if not _REGION.fullmatch(item) or item[:2] not in _TERRITORIES:
                raise ConfigError(f"{path}: '{item}' is not an ISO 3166-2 code such as 'AT-9' or 'US-CA'")
    elif key == "city":
        if not allow_precise:
            raise ConfigError(f"{path}: city-level conditions are too precise; set location.allow_precise = true")
    elif key == "referrer":
        _check_choices(values, REFERRER_CATEGORIES, path)
    elif key == "device":
        _check_choices(values, DEVICE_CLASSES, path)
    elif key == "referrer_domain":
        values = [item.lower() for item in values]
        for item in values:
            if not _DOMAIN.fullmatch(item):
                raise ConfigError(f"{path}: '{item}' is not a domain name such as 'example.com'")
    elif key == "campaign":
        for item in values:
            if not _CAMPAIGN.fullmatch(item):
                raise ConfigError(f"{path}: '{item}': campaign names are 1-64 letters, digits, spaces, '_', '.', '-'")
    return tuple(values)


def _check_choices(values: Sequence[str], choices: Sequence[str], path: str) -> None:
    for item in values:
        if item not in choices:
            hint = get_close_matches(item, choices, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"{path}: unknown value '{item}'{suggestion}; expected one of {list(choices)}")
