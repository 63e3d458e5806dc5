from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_personalize.consent import Consent
from edge_personalize.context import SignalReaders, VisitorContext
from edge_personalize.rules import (
    All,
    AnyOf,
    Campaign,
    Condition,
    Country,
    Device,
    Language,
    Not,
    Referrer,
    ReferrerDomain,
    Region,
    Returning,
)
from edge_personalize.signals.device import Device as DeviceSignal
from edge_personalize.signals.location import UNKNOWN_LOCATION, Location
from edge_personalize.signals.referrer import Referral
from tests.conftest import make_config

READERS = SignalReaders(make_config())

# Each variable of a context, with the values it may take. Several signals read one variable
# (country and region read the location), so a variable is fixed when any of its signals is.
VARIABLES: dict[str, tuple[frozenset[str], list[Any]]] = {
    "language": (frozenset({"language"}), [None, "en", "de", "fr"]),
    "location": (
        frozenset({"country", "region", "city"}),
        [
            UNKNOWN_LOCATION,
            Location("AT", "9", None, "CF-IPCountry"),
            Location("AT", None, None, "CF-IPCountry"),
            Location("DE", "BY", None, "CF-IPCountry"),
            Location("US", "CA", None, "GeoLite2-City.mmdb"),
        ],
    ),
    "referral": (
        frozenset({"referrer", "referrer_domain", "campaign"}),
        [
            Referral("direct", None, None),
            Referral("search", "google.com", None),
            Referral("social", "ycombinator.com", None),
            Referral("campaign", None, "spring-sale"),
            Referral("other", "example.org", None),
        ],
    ),
    "device": (
        frozenset({"device"}),
        [DeviceSignal(kind, False, "user agent") for kind in ("mobile", "tablet", "desktop", "unknown")],
    ),
    "returning": (frozenset({"returning"}), [None, True, False]),
}


def context(values: dict[str, Any]) -> VisitorContext:
    returning = values["returning"]
    consent = Consent("granted", returning=returning) if returning is not None else Consent()
    return VisitorContext.simulated(
        READERS,
        language=values["language"],
        location=values["location"],
        referral=values["referral"],
        device=values["device"],
        consent=consent,
    )


leaves = st.one_of(
    st.lists(st.sampled_from(["en", "de", "fr"]), min_size=1, max_size=2, unique=True).map(
        lambda v: Language(tuple(v))
    ),
    st.lists(st.sampled_from(["AT", "DE", "US", "CH"]), min_size=1, max_size=2, unique=True).map(
        lambda v: Country(tuple(v))
    ),
    st.sampled_from(["AT-9", "US-CA", "DE-BY"]).map(lambda v: Region((v,))),
    st.lists(
        st.sampled_from(["search", "social", "direct", "campaign", "other"]), min_size=1, max_size=2, unique=True
    ).map(lambda v: Referrer(tuple(v))),
    st.sampled_from(["google.com", "example.org"]).map(lambda v: ReferrerDomain((v,))),
    st.just(Campaign(("spring-sale",))),
    st.sampled_from(["mobile", "tablet", "desktop"]).map(lambda v: Device((v,))),
    st.booleans().map(Returning),
)
conditions: st.SearchStrategy[Condition] = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda items: All(tuple(items))),
        st.lists(children, min_size=1, max_size=3).map(lambda items: AnyOf(tuple(items))),
        children.map(Not),
    ),
    max_leaves=6,
)
contexts = st.fixed_dictionaries({name: st.sampled_from(values) for name, (_, values) in VARIABLES.items()})


@settings(max_examples=400, deadline=None)
@given(conditions, contexts, st.sampled_from(["en", "de", "fr"]))
def test_explanation_names_exactly_the_signals_that_decided(
    condition: Condition, values: dict[str, Any], language: str
) -> None:
    """Fix the signals the explanation names; whatever the others are, the decision stays the same."""
    ctx = context(values)
    matched = condition.matches(ctx)
    facts = condition.explain(ctx, language) if matched else condition.why_not(ctx, language)
    named = {fact.signal for fact in facts}
    assert named, "every decision names at least one fact"
    assert named <= condition.signals
    assert all(fact.text for fact in facts)
    free = [name for name, (signals, _) in VARIABLES.items() if not signals & named]
    for combination in itertools.product(*(VARIABLES[name][1] for name in free)):
        other = {**values, **dict(zip(free, combination, strict=True))}
        assert condition.matches(context(other)) == matched, (named, other)


def ctx_with(**values: Any) -> VisitorContext:
    base = {name: options[0] for name, (_, options) in VARIABLES.items()}
    return context({**base, **values})


def texts(condition: Condition, ctx: VisitorContext, language: str = "en") -> list[str]:
    return [fact.text for fact in condition.explain(ctx, language)]


def test_any_explains_the_first_alternative_that_matched() -> None:
    condition = AnyOf((Language(("de",)), Device(("mobile",))))
    ctx = ctx_with(language="fr", device=DeviceSignal("mobile", False, "client hints"))
    assert texts(condition, ctx) == ["You are using a phone."]


def test_all_explains_every_part() -> None:
    condition = All((Country(("AT",)), Referrer(("search",))))
    ctx = ctx_with(location=Location("AT", None, None, "CF-IPCountry"), referral=Referral("search", "google.at", None))
    assert texts(condition, ctx) == [
        "You appear to be in Austria, according to the location header of this site's network (CF-IPCountry).",
        "You came from a search engine (google.at).",
    ]


def test_not_explains_what_was_observed_instead() -> None:
    ctx = ctx_with(referral=Referral("direct", None, None))
    assert texts(Not(Referrer(("search", "social"))), ctx) == [
        "You came here directly, not from a link on another site."
    ]


def test_country_names_come_from_cldr_in_the_page_language() -> None:
    ctx = ctx_with(location=Location("AT", None, None, "GeoLite2-City.mmdb"))
    assert "Austria" in texts(Country(("AT",)), ctx, "en")[0]
    assert "Österreich" in texts(Country(("AT",)), ctx, "de")[0]
    assert "Autriche" in texts(Country(("AT",)), ctx, "fr")[0]
    assert "location database" in texts(Country(("AT",)), ctx, "en")[0]


def test_language_name_comes_from_cldr() -> None:
    assert texts(Language(("de",)), ctx_with(language="de")) == ["Your browser asks for pages in German."]


def test_region_matches_the_full_iso_3166_2_code() -> None:
    assert Region(("AT-9",)).matches(ctx_with(location=Location("AT", "9", None, "CF-IPCountry")))
    assert not Region(("AT-9",)).matches(ctx_with(location=Location("DE", "9", None, "CF-IPCountry")))


def test_returning_never_matches_without_consent() -> None:
    assert not Returning(True).matches(ctx_with(returning=None))
    assert not Returning(False).matches(ctx_with(returning=None))
    assert Returning(True).matches(ctx_with(returning=True))


@pytest.mark.parametrize(
    "condition",
    [Language(("de",)), AnyOf((Country(("AT",)), Not(Device(("mobile",))))), All((Campaign(("x",)), Returning(True)))],
)
def test_condition_round_trips_through_its_data_form(condition: Condition) -> None:
    from edge_personalize.rules import parse_condition

    parsed = parse_condition(condition.to_data(), "when", languages=("en", "de"), allow_precise=False)
    assert parsed == condition
