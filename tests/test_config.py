from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalize import ConfigError, Route, load_config
from edge_personalize.rules import All, AnyOf, Device, Language, Not, Referrer
from tests.conftest import make_config

MINIMAL = """
[site]
languages = ["en", "de"]

[[routes]]
path = "/"
slots = ["hero"]

[slots.hero]
[[slots.hero.variants]]
name = "german-speakers"
when = { language = "de" }
html = "<h1>Willkommen</h1>"
purpose = "support"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "personalize.toml"
    path.write_text(text)
    return path


def test_minimal_file_gets_every_documented_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.site.languages == ("en", "de")
    assert config.site.secret_keys_env == "EDGE_PERSONALIZE_SECRET"
    assert config.site.endpoint_prefix == "/_personalize"
    assert config.site.standard_param == "personalize"
    assert config.location.source == "header" and config.location.provider == "cloudflare"
    assert config.location.trusted_proxies == ("127.0.0.1/32",)
    assert config.location.allow_precise is False
    assert config.consent.required_for == "cookies" and config.consent.max_age_days == 180
    assert config.consent.honor_gpc is True and config.consent.policy_version == "1"
    assert config.badge.enabled is True and config.badge.privacy_url == "/privacy"
    assert config.limits.max_slots_per_page == 3 and config.limits.max_signals_per_variant == 2
    assert config.routes == (Route("/", slots=("hero",)),)
    assert config.slots["hero"].variants[0].when == Language(("de",))
    assert config.base_dir == tmp_path.resolve()


def test_the_design_example_loads(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "hero_search.html").write_text("<h1>Found what you searched for?</h1>")
    text = (
        MINIMAL
        + """
[[slots.hero.variants]]
name = "from-search"
when = { all = [{ referrer = "search" }, { device = "mobile" }] }
template = "hero_search.html"
purpose = "support"

[[routes]]
path = "/docs/{rest:path}"
enabled = false
"""
    )
    config = load_config(write(tmp_path, text))
    assert config.slots["hero"].variants[1].when == All((Referrer(("search",)), Device(("mobile",))))


def test_python_api_builds_the_same_config(tmp_path: Path) -> None:
    from_file = load_config(write(tmp_path, MINIMAL))
    in_code = make_config(routes=(Route("/", slots=("hero",)),), location=from_file.location, site=from_file.site)
    assert in_code.slots["hero"] == from_file.slots["hero"]


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        (
            'when = { language = "de" }',
            'when = { langauge = "de" }',
            "personalize.toml: slots.hero.variants[0].when: unknown signal 'langauge' (did you mean 'language'?)",
        ),
        (
            'languages = ["en", "de"]',
            'languages = ["en", "de"]\ncolour = 1',
            "personalize.toml: site.colour: unknown key",
        ),
        (
            'purpose = "support"',
            'purpose = "sell"',
            "personalize.toml: slots.hero.variants[0].purpose: unknown value 'sell'",
        ),
        (
            'slots = ["hero"]',
            'slots = ["heor"]',
            "personalize.toml: routes[0].slots: unknown slot 'heor' (did you mean 'hero'?)",
        ),
        (
            'when = { language = "de" }',
            'when = { language = "es" }',
            "personalize.toml: slots.hero.variants[0].when.language: 'es' is not one of site.languages",
        ),
        (
            'when = { language = "de" }',
            'when = { city = "Vienna" }',
            "personalize.toml: slots.hero.variants[0].when.city: city-level conditions are too precise",
        ),
        (
            'when = { language = "de" }',
            'when = { country = "XX" }',
            "personalize.toml: slots.hero.variants[0].when.country: 'XX' is not an ISO 3166-1 alpha-2 country code",
        ),
        (
            'when = { language = "de" }',
            'when = { referrer = "serach" }',
            "personalize.toml: slots.hero.variants[0].when.referrer: unknown value 'serach' (did you mean 'search'?)",
        ),
        (
            'when = { language = "de" }',
            'when = { language = "de", country = "AT", device = "mobile" }',
            "personalize.toml: slots.hero.variants[0].when: reads 3 signals",
        ),
        (
            'html = "<h1>Willkommen</h1>"',
            'template = "missing.html"',
            "personalize.toml: slots.hero.variants[0].template: 'missing.html' not found",
        ),
        (
            'html = "<h1>Willkommen</h1>"',
            'html = "x"\ntemplate = "x.html"',
            "personalize.toml: slots.hero.variants[0]: give exactly one of html or template",
        ),
        ('path = "/"', 'path = "/{id:nope}"', "personalize.toml: routes[0].path: Unknown path convertor 'nope'"),
        ('path = "/"', 'path = "nope"', "personalize.toml: routes[0].path: 'nope' must start with '/'"),
        ("[site]", '[site]\nenabled = "yes"', "personalize.toml: site.enabled: expected true or false"),
        (
            "[site]",
            "[limits]\nmax_slots_per_page = 0\n[site]",
            "personalize.toml: limits.max_slots_per_page: expected a positive",
        ),
        ("[site]", '[location]\nsource = "geoip"\n[site]', "personalize.toml: location.geoip_database: required"),
        ("[site]", '[location]\nprovider = "custom"\n[site]', "personalize.toml: location.country_header: required"),
        (
            "[site]",
            '[consent]\nrequired_for = "all"\n[site]',
            "personalize.toml: consent.required_for: unknown value 'all'",
        ),
        ('name = "german-speakers"', 'name = "german speakers!"', "personalize.toml: slots.hero.variants[0].name:"),
        ("[slots.hero]", "[slots.hero]\nholdout = 1.5", "personalize.toml: slots.hero.holdout: expected a share"),
        (
            'when = { language = "de" }',
            "when = { not = [] }",
            "personalize.toml: slots.hero.variants[0].when.not: a condition",
        ),
    ],
)
def test_errors_name_the_file_and_the_key_path(tmp_path: Path, replace: str, by: str, message: str) -> None:
    assert replace in MINIMAL
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, MINIMAL.replace(replace, by, 1)))
    assert str(error.value).startswith(message)


def test_missing_file_and_invalid_toml_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"personalize\.toml: not valid TOML"):
        load_config(write(tmp_path, "[site\n"))


def test_combinators_parse_into_condition_objects(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'when = { language = "de" }',
        'when = { any = [{ language = "de" }, { not = { referrer = ["search", "social"] } }] }',
    )
    when = load_config(write(tmp_path, text)).slots["hero"].variants[0].when
    assert when == AnyOf((Language(("de",)), Not(Referrer(("search", "social")))))


def test_city_is_accepted_with_allow_precise(tmp_path: Path) -> None:
    text = "[location]\nallow_precise = true\n" + MINIMAL.replace('{ language = "de" }', '{ city = "Wien" }')
    assert load_config(write(tmp_path, text)).slots["hero"].variants[0].when.signals == {"city"}  # type: ignore[union-attr]


def test_secret_keys_come_from_the_environment_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", " new-secret-0123456789 , old-secret-0123456789 ")
    assert make_config(secret_keys=()).signing_keys() == ["new-secret-0123456789", "old-secret-0123456789"]
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        make_config(secret_keys=()).signing_keys()
