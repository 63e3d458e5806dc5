"""The visitor's anonymous context for one request, each signal read only when a rule asks."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from typing import TYPE_CHECKING

from starlette.datastructures import Headers

from edge_personalize.consent import NO_CONSENT, Consent, needs_consent
from edge_personalize.errors import ConfigError
from edge_personalize.signals.device import Device, classify_device
from edge_personalize.signals.language import LanguageNegotiator
from edge_personalize.signals.location import (
    UNKNOWN_LOCATION,
    GeoIPLocator,
    HeaderLocator,
    Location,
    LocationError,
    client_ip,
    provider_headers,
)
from edge_personalize.signals.referrer import Referral, classify_referral

if TYPE_CHECKING:
    from starlette.types import Scope

    from edge_personalize.config import Config


# Read by every context (language, referrer, device, consent, the owner's trace), whatever the location source.
_CONTEXT_HEADERS = (
    "accept-language",
    "referer",
    "host",
    "user-agent",
    "sec-ch-ua-mobile",
    "cookie",
    "sec-gpc",
    "x-personalize-trace",
)


class SignalReaders:
    """Everything needed to read signals, built once per configuration."""

    def __init__(self, config: Config) -> None:
        self.languages = config.site.languages
        self.default_language = config.site.languages[0]
        self.negotiator = LanguageNegotiator(config.site.languages)
        loc = config.location
        self.header_locator: HeaderLocator | None = None
        self.geoip: GeoIPLocator | None = None
        # Signals a shared cache can key on, with the request headers they are read from.
        self.cache_keys: dict[str, tuple[str, ...]] = {"language": ("Accept-Language",), "campaign": ()}
        try:
            self.trusted_proxies = tuple(ipaddress.ip_network(net, strict=False) for net in loc.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"{config.source}: location.trusted_proxies: {exc}") from None
        if loc.source == "header":
            try:
                headers = provider_headers(loc.provider, loc.country_header, loc.region_header, loc.city_header)
            except ValueError as exc:
                raise ConfigError(f"{config.source}: location.provider: {exc}") from None
            self.header_locator = HeaderLocator(headers)
            for signal in ("country", "region", "city"):
                self.cache_keys[signal] = tuple(self.header_locator.vary_headers([signal]))
        elif loc.source == "geoip":
            assert loc.geoip_database is not None
            try:
                self.geoip = GeoIPLocator(config.resolve(loc.geoip_database))
            except LocationError as exc:
                raise ConfigError(f"{config.source}: location.geoip_database: {exc}") from None
        else:
            self.cache_keys.update(country=(), region=(), city=())
        # Every request header a context may read: it is given only these (see `VisitorContext.headers`),
        # so they are, with the path, the query and the client address, all a visitor's context depends on.
        names = [*_CONTEXT_HEADERS, *(name for names in self.cache_keys.values() for name in names)]
        if not needs_consent(config):
            names = [name for name in names if name not in ("cookie", "sec-gpc")]  # no choice is ever read
        if self.geoip is not None:
            names.append("x-forwarded-for")
        self.request_headers = frozenset(name.lower().encode("latin-1") for name in names)

    def request_values(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The request's headers that a context may read, in their order."""
        wanted = self.request_headers
        return [header for header in scope["headers"] if header[0] in wanted]


class VisitorContext:
    """Reduced signals for one request. `read` records which signals were looked at."""

    def __init__(self, readers: SignalReaders, scope: Scope, consent: Consent = NO_CONSENT) -> None:
        self._readers = readers
        self._scope = scope
        self.consent = consent
        self.read: set[str] = set()

    @classmethod
    def simulated(
        cls,
        readers: SignalReaders,
        *,
        language: str | None = None,
        location: Location = UNKNOWN_LOCATION,
        referral: Referral | None = None,
        device: Device | None = None,
        consent: Consent = NO_CONSENT,
    ) -> VisitorContext:
        """A context with chosen values, for previews, the simulator and the CLI."""
        ctx = cls(readers, {"type": "http", "headers": [], "query_string": b""}, consent)
        values = ctx.__dict__
        values["language"] = language if language in readers.languages else None
        values["language_source"] = "simulation"
        values["location"] = location
        values["referral"] = referral or Referral("direct", None, None)
        values["device"] = device or Device("desktop", False, "none")
        return ctx

    @cached_property
    def headers(self) -> Headers:
        return Headers(raw=self._readers.request_values(self._scope))

    @cached_property
    def language_source(self) -> str:
        return "your choice" if self.consent.language in self._readers.languages else "Accept-Language"

    @cached_property
    def language(self) -> str | None:
        """The site language the visitor asked for, or None for no usable preference."""
        self.read.add("language")
        if self.consent.language in self._readers.languages:
            return self.consent.language
        return self._readers.negotiator.negotiate(self.headers.get("accept-language"))

    @property
    def page_language(self) -> str:
        return self.language or self._readers.default_language

    @cached_property
    def location_corrected(self) -> bool:
        return self.consent.country is not None

    @cached_property
    def location(self) -> Location:
        self.read.add("location")
        readers = self._readers
        if self.consent.country is not None:
            return Location(self.consent.country, None, None, "your choice")
        if readers.header_locator is not None:
            return readers.header_locator.locate(self.headers)
        if readers.geoip is not None:
            client = self._scope.get("client")
            ip = client_ip(client, self.headers.get("x-forwarded-for"), readers.trusted_proxies)
            return readers.geoip.locate(ip)
        return UNKNOWN_LOCATION

    @cached_property
    def referral(self) -> Referral:
        self.read.add("referrer")
        query = self._scope.get("query_string", b"").decode("latin-1")
        return classify_referral(self.headers.get("referer"), self.headers.get("host"), query)

    @cached_property
    def device(self) -> Device:
        self.read.add("device")
        return classify_device(self.headers.get("user-agent"), self.headers.get("sec-ch-ua-mobile"))

    @property
    def returning(self) -> bool | None:
        self.read.add("returning")
        return self.consent.returning if self.consent.state == "granted" else None
