"""The site's personalization policy: TOML (primary) or the same dataclasses built in Python.

Every problem is a `ConfigError` that names the file and the key path of the first problem, and
unknown keys are errors rather than silently ignored.
"""

from __future__ import annotations

import os
import re
import time
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from starlette.routing import compile_path

from edge_personalize.errors import ConfigError
from edge_personalize.explain import PURPOSES
from edge_personalize.rules import Condition, parse_condition

__all__ = [
    "BadgeSettings",
    "Config",
    "ConfigError",
    "ConsentSettings",
    "Limits",
    "LocationSettings",
    "OwnerSettings",
    "PolicyFile",
    "Route",
    "SiteSettings",
    "Slot",
    "Variant",
    "load_config",
]

PROVIDERS = ("cloudflare", "vercel", "cloudfront", "fastly", "akamai", "appengine", "custom")
MIN_SECRET_LENGTH = 16
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _choice(path: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        hint = get_close_matches(value, choices, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(f"{path}: unknown value '{value}'{suggestion}; expected one of {list(choices)}")


@dataclass(frozen=True)
class SiteSettings:
    languages: tuple[str, ...]
    secret_keys_env: str = "EDGE_PERSONALIZE_SECRET"
    endpoint_prefix: str = "/_personalize"
    enabled: bool = True
    standard_param: str = "personalize"
    templates_dir: str = "templates"

    def __post_init__(self) -> None:
        if not self.languages:
            raise ConfigError("site.languages: list at least one language; the first is the default")
        for i, tag in enumerate(self.languages):
            try:
                Locale.parse(tag, sep="-" if "-" in tag else "_")
            except (ValueError, UnknownLocaleError):
                raise ConfigError(
                    f"site.languages[{i}]: '{tag}' is not a language tag such as 'en' or 'pt-BR'"
                ) from None
        if not re.fullmatch(r"(/[A-Za-z0-9_.~-]+)+", self.endpoint_prefix):
            raise ConfigError(f"site.endpoint_prefix: '{self.endpoint_prefix}' must look like '/_personalize'")
        if not _NAME.fullmatch(self.standard_param):
            raise ConfigError(f"site.standard_param: '{self.standard_param}' is not a plain query parameter name")


@dataclass(frozen=True)
class LocationSettings:
    source: str = "header"
    provider: str = "cloudflare"
    country_header: str | None = None
    region_header: str | None = None
    city_header: str | None = None
    geoip_database: str | None = None
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32",)
    allow_precise: bool = False

    def __post_init__(self) -> None:
        _choice("location.source", self.source, ("header", "geoip", "none"))
        _choice("location.provider", self.provider, PROVIDERS)
        if self.source == "header" and self.provider == "custom" and not self.country_header:
            raise ConfigError('location.country_header: required with provider = "custom"')
        if self.source == "geoip" and not self.geoip_database:
            raise ConfigError('location.geoip_database: required with source = "geoip"')


@dataclass(frozen=True)
class ConsentSettings:
    required_for: str = "cookies"
    policy_version: str = "1"
    max_age_days: int = 180
    honor_gpc: bool = True
    vary_cookie: bool = False  # behind a cache that keys on cookies: Vary instead of private

    def __post_init__(self) -> None:
        _choice("consent.required_for", self.required_for, ("cookies", "everything"))
        if not 1 <= self.max_age_days <= 400:
            raise ConfigError("consent.max_age_days: expected a number of days from 1 to 400")
        if not _NAME.fullmatch(self.policy_version):
            raise ConfigError('consent.policy_version: expected a short version string such as "1"')


@dataclass(frozen=True)
class BadgeSettings:
    enabled: bool = True
    privacy_url: str = "/privacy"


@dataclass(frozen=True)
class Limits:
    max_slots_per_page: int = 3
    max_signals_per_variant: int = 2
    max_slot_bytes: int = 256 * 1024

    def __post_init__(self) -> None:
        for item in fields(self):
            if getattr(self, item.name) < 1:
                raise ConfigError(f"limits.{item.name}: expected a positive number")


@dataclass(frozen=True)
class OwnerSettings:
    token_hash_env: str = "EDGE_PERSONALIZE_OWNER_TOKEN_HASH"
    switches: str = "switches.toml"
    redis_url: str | None = None


@dataclass(frozen=True)
class Variant:
    name: str
    when: Condition | Mapping[str, Any]
    purpose: str
    html: str | None = None
    template: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class Slot:
    variants: tuple[Variant, ...]
    holdout: float = 0.0
    enabled: bool = True


@dataclass(frozen=True)
class Route:
    path: str
    slots: tuple[str, ...] = ()
    enabled: bool = True
    shared_links_standard: bool = True


@dataclass(frozen=True)
class Config:
    """A complete, checked policy. Build it from TOML with `load_config`, or directly in Python."""

    site: SiteSettings
    routes: tuple[Route, ...]
    slots: Mapping[str, Slot]
    location: LocationSettings = field(default_factory=LocationSettings)
    consent: ConsentSettings = field(default_factory=ConsentSettings)
    badge: BadgeSettings = field(default_factory=BadgeSettings)
    limits: Limits = field(default_factory=Limits)
    owner: OwnerSettings = field(default_factory=OwnerSettings)
    source: str = "<config>"  # the file name used in error messages
    base_dir: Path = field(default_factory=Path.cwd)  # relative paths in the config start here
    secret_keys: tuple[str, ...] = ()  # given in code; otherwise read from site.secret_keys_env

    def __post_init__(self) -> None:
        try:
            object.__setattr__(
                self, "slots", {name: self._checked_slot(name, slot) for name, slot in self.slots.items()}
            )
            self._check_routes()
        except ConfigError as exc:
            raise ConfigError(f"{self.source}: {exc}") from None

    def resolve(self, path: str) -> Path:
        return self.base_dir / path

    @property
    def templates_path(self) -> Path:
        return self.resolve(self.site.templates_dir)

    def signing_keys(self) -> list[str]:
        """The secret keys, newest first; a missing or short secret is a start-up error."""
        keys = list(self.secret_keys)
        if not keys:
            raw = os.environ.get(self.site.secret_keys_env, "")
            keys = [key.strip() for key in raw.split(",") if key.strip()]
        if not keys:
            raise ConfigError(
                f"{self.source}: site.secret_keys_env: the environment variable {self.site.secret_keys_env} is not set;"
                " set it to a random secret, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        for key in keys:
            if len(key) < MIN_SECRET_LENGTH:
                raise ConfigError(
                    f"{self.source}: site.secret_keys_env: every key in {self.site.secret_keys_env} needs at least"
                    f" {MIN_SECRET_LENGTH} characters"
                )
        return keys

    def _checked_slot(self, name: str, slot: Slot) -> Slot:
        path = f"slots.{name}"
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{path}: slot names are 1-64 letters, digits, '_', '.', '-'")
        if not 0.0 <= slot.holdout < 1.0:
            raise ConfigError(f"{path}.holdout: expected a share from 0 to below 1, such as 0.05")
        if not slot.variants:
            raise ConfigError(f"{path}.variants: list at least one variant")
        seen: set[str] = set()
        variants = []
        for i, variant in enumerate(slot.variants):
            here = f"{path}.variants[{i}]"
            if not _NAME.fullmatch(variant.name):
                raise ConfigError(f"{here}.name: variant names are 1-64 letters, digits, '_', '.', '-'")
            if variant.name in seen:
                raise ConfigError(f"{here}.name: '{variant.name}' is used twice in this slot")
            seen.add(variant.name)
            _choice(f"{here}.purpose", variant.purpose, PURPOSES)
            if (variant.html is None) == (variant.template is None):
                raise ConfigError(f"{here}: give exactly one of html or template")
            if variant.template is not None and not (self.templates_path / variant.template).is_file():
                raise ConfigError(f"{here}.template: '{variant.template}' not found in {self.templates_path}")
            when = variant.when
            data = when if isinstance(when, Mapping) else when.to_data()
            condition = parse_condition(
                data, f"{here}.when", languages=self.site.languages, allow_precise=self.location.allow_precise
            )
            if len(condition.signals) > self.limits.max_signals_per_variant:
                raise ConfigError(
                    f"{here}.when: reads {len(condition.signals)} signals ({', '.join(sorted(condition.signals))});"
                    f" the comfort budget limits.max_signals_per_variant is {self.limits.max_signals_per_variant}"
                )
            variants.append(replace(variant, when=condition))
        return replace(slot, variants=tuple(variants))

    def _check_routes(self) -> None:
        if not self.routes:
            raise ConfigError("routes: configure at least one [[routes]] entry")
        for i, route in enumerate(self.routes):
            if not route.path.startswith("/"):
                raise ConfigError(f"routes[{i}].path: '{route.path}' must start with '/'")
            try:
                compile_path(route.path)
            except (AssertionError, ValueError) as exc:
                raise ConfigError(f"routes[{i}].path: {exc}") from None
            for slot in route.slots:
                if slot not in self.slots:
                    hint = get_close_matches(slot, list(self.slots), n=1)
                    suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                    raise ConfigError(f"routes[{i}].slots: unknown slot '{slot}'{suggestion}")


class PolicyFile:
    """Tells, at most once per `interval` seconds and cheaply in between, whether a policy file changed."""

    def __init__(self, path: Path, *, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self._stamp = self._read_stamp()
        self._next_check = time.monotonic() + interval

    def changed(self) -> bool:
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.interval
        stamp = self._read_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True

    def _read_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check a TOML policy file; raises ConfigError naming the file and key path."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{file}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return config_from_dict(data, source=file.name, base_dir=file.resolve().parent)


def config_from_dict(data: Mapping[str, Any], *, source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Build a Config from the parsed TOML structure (also usable with a dict built in code)."""
    try:
        _known_keys(data, ("site", "location", "consent", "badge", "limits", "owner", "routes", "slots"), "")
        if "site" not in data:
            raise ConfigError("site: missing; a minimal file has [site] with languages")
        slots_data = data.get("slots", {})
        if not isinstance(slots_data, Mapping) or not slots_data:
            raise ConfigError("slots: define at least one [slots.NAME] with a variant")
        routes_data = data.get("routes", [])
        if not isinstance(routes_data, list):
            raise ConfigError("routes: expected [[routes]] tables")
        return Config(
            site=_build(SiteSettings, data["site"], "site"),
            location=_build(LocationSettings, data.get("location", {}), "location"),
            consent=_build(ConsentSettings, data.get("consent", {}), "consent"),
            badge=_build(BadgeSettings, data.get("badge", {}), "badge"),
            limits=_build(Limits, data.get("limits", {}), "limits"),
            owner=_build(OwnerSettings, data.get("owner", {}), "owner"),
            routes=tuple(_build(Route, item, f"routes[{i}]") for i, item in enumerate(routes_data)),
            slots={name: _slot(slot, f"slots.{name}") for name, slot in slots_data.items()},
            source=source,
            base_dir=base_dir or Path.cwd(),
        )
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(f"{source}: ") else f"{source}: {message}") from None


def _slot(data: object, path: str) -> Slot:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a table")
    _known_keys(data, ("variants", "holdout", "enabled"), path)
    variants = data.get("variants")
    if not isinstance(variants, list):
        raise ConfigError(f"{path}.variants: expected [[{path}.variants]] tables")
    built = tuple(_build(Variant, item, f"{path}.variants[{i}]") for i, item in enumerate(variants))
    rest = {key: value for key, value in data.items() if key != "variants"}
    slot: Slot = _build(Slot, rest, path, variants=built)
    return slot


def _known_keys(data: Mapping[str, Any], known: tuple[str, ...], path: str) -> None:
    for key in data:
        if key not in known:
            hint = get_close_matches(key, known, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            where = f"{path}." if path else ""
            raise ConfigError(f"{where}{key}: unknown key{suggestion}")


def _build(cls: type[Any], data: object, path: str, **built: Any) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a table")
    assert is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    names = tuple(item.name for item in fields(cls))
    _known_keys(data, names, path)
    kwargs = {key: _coerce(value, hints[key], f"{path}.{key}") for key, value in data.items()}
    kwargs.update(built)
    missing = [item.name for item in fields(cls) if item.name not in kwargs and _required(item)]
    if missing:
        raise ConfigError(f"{path}.{missing[0]}: missing required key")
    return cls(**kwargs)


def _required(item: Any) -> bool:
    return item.default is MISSING and item.default_factory is MISSING


def _coerce(value: object, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:
            return _coerce(value, options[0], path)
        return value  # a condition: checked when the Config is built
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{path}: expected a list of strings")
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string")
        return value
    return value
