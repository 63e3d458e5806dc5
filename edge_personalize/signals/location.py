"""Coarse visitor location from a CDN geo header or a local MaxMind database.

Only reduced values leave this module: a country code, a subdivision code and a city name.
The client IP address and the raw header values are read here and dropped here.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal
from urllib.parse import unquote

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


logger = logging.getLogger("edge_personalize")


class LocationError(Exception):
    """The location source cannot work (missing or unreadable database); raised at start-up."""


@dataclass(frozen=True, slots=True)
class Location:
    """Country (ISO 3166-1 alpha-2), region (ISO 3166-2 code without the country part), English city
    name, and the header or database file it came from; each None when unknown."""

    country: str | None
    region: str | None
    city: str | None
    source: str | None


UNKNOWN_LOCATION = Location(None, None, None, None)


@dataclass(frozen=True, slots=True)
class ProviderHeaders:
    country: str
    region: str | None
    city: str | None
    # "percent": values are URL-encoded (Vercel). "edgescape": one header holds every field as a
    # comma list of key=value (Akamai), so country, region and city all name that header.
    encoding: Literal["plain", "percent", "edgescape"] = "plain"


_EDGESCAPE = "x-akamai-edgescape"

PROVIDERS: Mapping[str, ProviderHeaders] = MappingProxyType(
    {
        # cf-region-code and cf-ipcity come from the "Add visitor location headers" managed transform;
        # CF-IPCountry alone comes from the IP Geolocation setting.
        "cloudflare": ProviderHeaders("cf-ipcountry", "cf-region-code", "cf-ipcity"),
        "vercel": ProviderHeaders(
            "x-vercel-ip-country", "x-vercel-ip-country-region", "x-vercel-ip-city", encoding="percent"
        ),
        "cloudfront": ProviderHeaders(
            "cloudfront-viewer-country", "cloudfront-viewer-country-region", "cloudfront-viewer-city"
        ),
        # Fastly sends no geo header of its own; the service's VCL has to set these, e.g. in vcl_recv:
        #   set req.http.Fastly-Geo-Country = client.geo.country_code;
        #   set req.http.Fastly-Geo-Region = client.geo.region;
        #   set req.http.Fastly-Geo-City = client.geo.city.utf8;
        "fastly": ProviderHeaders("fastly-geo-country", "fastly-geo-region", "fastly-geo-city"),
        "akamai": ProviderHeaders(_EDGESCAPE, _EDGESCAPE, _EDGESCAPE, encoding="edgescape"),
        "appengine": ProviderHeaders("x-appengine-country", "x-appengine-region", "x-appengine-city"),
    }
)

# The spelling each provider documents, for the explanation shown to the visitor.
_DISPLAY_NAMES = {
    "cf-ipcountry": "CF-IPCountry",
    "x-vercel-ip-country": "x-vercel-ip-country",
    "cloudfront-viewer-country": "CloudFront-Viewer-Country",
    "fastly-geo-country": "Fastly-Geo-Country",
    _EDGESCAPE: "X-Akamai-Edgescape",
    "x-appengine-country": "X-AppEngine-Country",
}

_FIELDS = frozenset({"country", "region", "city"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")


def provider_headers(
    provider: str,
    country_header: str | None = None,
    region_header: str | None = None,
    city_header: str | None = None,
) -> ProviderHeaders:
    """The geo headers of a CDN provider, or of a "custom" one named by the caller."""
    name = provider.strip().lower()
    given = [h for h in (country_header, region_header, city_header) if h is not None]
    if name == "custom":
        if country_header is None:
            raise ValueError('provider = "custom" needs country_header (the header that carries the country code)')
        for header in given:
            if not _TOKEN.fullmatch(header.strip().lower()):
                raise ValueError(f"{header!r} is not a valid HTTP header name")
        return ProviderHeaders(
            country_header.strip().lower(),
            region_header.strip().lower() if region_header else None,
            city_header.strip().lower() if city_header else None,
        )
    if name not in PROVIDERS:
        known = ", ".join([*PROVIDERS, "custom"])
        raise ValueError(f"unknown location provider {provider!r} (known: {known})")
    if given:
        raise ValueError(
            f"provider {name!r} has fixed header names; country_header, region_header and city_header are only "
            'used with provider = "custom"'
        )
    return PROVIDERS[name]


class HeaderLocator:
    """Reads the location a CDN put into request headers."""

    def __init__(self, headers: ProviderHeaders) -> None:
        self._headers = headers
        self._source = _DISPLAY_NAMES.get(headers.country, headers.country)

    def locate(self, headers: Mapping[str, str]) -> Location:
        """The visitor's location; unknown for absent or implausible values, never an exception."""
        spec = self._headers
        if spec.encoding == "edgescape":
            fields = _parse_edgescape(headers.get(_EDGESCAPE))
            raw_country = fields.get("country_code")
            raw_region = fields.get("region_code")
            raw_city = fields.get("city")
        else:
            raw_country = headers.get(spec.country)
            raw_region = headers.get(spec.region) if spec.region else None
            raw_city = headers.get(spec.city) if spec.city else None
        country = _country(raw_country)
        if country is None:
            return UNKNOWN_LOCATION
        city_text = _header_text(raw_city, percent=spec.encoding == "percent") if raw_city is not None else None
        return Location(country, _region(raw_region, country), _city(city_text), self._source)

    def vary_headers(self, fields: Collection[str]) -> list[str]:
        """The header names a shared cache must vary on when conditions read these location fields."""
        unknown = set(fields) - _FIELDS
        if unknown:
            raise ValueError(f"unknown location fields: {', '.join(sorted(unknown))}")
        if not fields:
            return []
        # Region and city are dropped whenever the country is unknown, so they depend on its header too.
        names = [self._headers.country]
        if "region" in fields and self._headers.region:
            names.append(self._headers.region)
        if "city" in fields and self._headers.city:
            names.append(self._headers.city)
        return list(dict.fromkeys(names))


class GeoIPLocator:
    """Looks the client address up in a local MaxMind DB file (City or Country)."""

    def __init__(self, database: str | os.PathLike[str]) -> None:
        path = os.fspath(database)
        try:
            import maxminddb
        except ImportError as exc:
            raise LocationError(
                f"{path}: reading a GeoIP database needs the maxminddb package: pip install edge-personalize[geoip]"
            ) from exc
        fix = "download GeoLite2-City.mmdb or GeoLite2-Country.mmdb from MaxMind; set location.geoip_database to it"
        if not os.path.isfile(path):
            raise LocationError(f"{path}: GeoIP database not found; {fix}")
        try:
            reader = maxminddb.open_database(path)
        except (maxminddb.InvalidDatabaseError, OSError, ValueError) as exc:
            raise LocationError(f"{path}: not a readable MaxMind DB file ({exc}); {fix}") from exc
        try:
            # Opening checks only the metadata at the end of the file; one lookup walks the search
            # tree and the data section too, so more damage shows now instead of on the first visitor.
            reader.get("1.1.1.1")
            database_type = str(reader.metadata().database_type)
        except (maxminddb.InvalidDatabaseError, OSError, ValueError) as exc:
            reader.close()
            raise LocationError(f"{path}: not a readable MaxMind DB file ({exc}); {fix}") from exc
        if not any(kind in database_type.lower() for kind in ("city", "country", "enterprise", "location")):
            reader.close()
            raise LocationError(f"{path}: a {database_type!r} database has no locations; {fix}")
        self._reader = reader
        self._source = os.path.basename(path)
        self._failing = False

    def locate(self, ip: str | None) -> Location:
        """The location of this address; unknown when it is missing, not public or not in the file."""
        address = _parse_ip(ip) if ip else None
        if address is None or not address.is_global:
            return UNKNOWN_LOCATION
        # The file is outside our control: whatever a damaged one raises means "unknown", never a broken page.
        try:
            record = self._reader.get(address)
        except Exception as exc:
            if not self._failing:
                # Once per run of failures: a damaged file would otherwise log on every request.
                logger.warning("edge-personalize: GeoIP lookup in %s failed, location unknown (%s)", self._source, exc)
            self._failing = True
            return UNKNOWN_LOCATION
        self._failing = False
        if not isinstance(record, dict):
            return UNKNOWN_LOCATION
        country = _country(_lookup(record, "country", "iso_code"))
        if country is None:
            return UNKNOWN_LOCATION
        subdivisions = record.get("subdivisions")
        # The first subdivision is the largest (England, not West Berkshire): coarse on purpose.
        first = subdivisions[0] if isinstance(subdivisions, list) and subdivisions else None
        region = _region(_lookup(first, "iso_code"), country)
        city = _city(_lookup(record, "city", "names", "en"))
        return Location(country, region, city, self._source)

    def close(self) -> None:
        """Release the database file."""
        self._reader.close()


def client_ip(
    scope_client: tuple[str, int] | None,
    forwarded_for: str | None,
    trusted_proxies: Sequence[IPNetwork],
) -> str | None:
    """The visitor's address: the direct peer, or what trusted proxies recorded in X-Forwarded-For."""
    peer = _parse_ip(scope_client[0]) if scope_client else None
    if peer is None:
        return None
    if not forwarded_for or not _is_trusted(peer, trusted_proxies):
        return str(peer)
    # Each proxy appends the address it saw, so the right end is the most trustworthy; everything
    # left of the first untrusted hop may have been written by the client itself.
    address = peer
    for entry in reversed(forwarded_for.split(",")):
        hop = _parse_forwarded(entry)
        if hop is None:
            return str(peer)
        if not _is_trusted(hop, trusted_proxies):
            return str(hop)
        address = hop
    return str(address)


_UNKNOWN_COUNTRIES = frozenset({"XX", "T1", "A1", "A2", "O1", "EU", "AP", "ZZ"})
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_REGION = re.compile(r"[A-Z0-9]{1,3}")
_MAX_CITY = 100
# A real value is short; anything longer is not worth decoding (percent-encoded UTF-8 needs at most 9 per character).
_MAX_RAW = 1024


def _country(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > 16:
        return None
    code = value.strip()
    if not _COUNTRY.fullmatch(code):
        return None
    code = code.upper()
    return None if code in _UNKNOWN_COUNTRIES else code


def _region(value: object, country: str) -> str | None:
    if not isinstance(value, str) or len(value) > 16 or not value.isascii():
        return None
    code = value.strip().upper()
    prefix, dash, rest = code.partition("-")
    if dash and prefix == country:
        code = rest
    return code if _REGION.fullmatch(code) else None


def _city(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > _MAX_RAW:
        return None
    name = value.strip()
    if not name or len(name) > _MAX_CITY:
        return None
    categories = [unicodedata.category(ch) for ch in name]
    # Control and format characters (NUL, bidi overrides, zero-width) have no place in a place name;
    # a value without any letter ("?", "--", "0") is a provider's way of saying "unknown".
    if any(cat[0] == "C" for cat in categories) or not any(cat[0] == "L" for cat in categories):
        return None
    return name


def _header_text(value: str, *, percent: bool) -> str | None:
    if len(value) > _MAX_RAW:
        return None
    # ASGI servers hand header bytes over decoded as latin-1; providers send UTF-8, so undo that.
    # A value that is not latin-1 already is real text (a plain dict, another server) and is kept.
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        text = value
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if percent:
        try:
            text = unquote(text, errors="strict")
        except UnicodeDecodeError:
            return None
    return text


def _parse_edgescape(value: str | None) -> dict[str, str]:
    if not value or len(value) > 8 * _MAX_RAW:
        return {}
    fields: dict[str, str] = {}
    for item in value.split(","):
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if eq and key in ("country_code", "region_code", "city"):
            fields[key] = val.strip()
    return fields


def _lookup(record: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(record, dict):
            return None
        record = record.get(key)
    return record


def _parse_ip(value: str | None) -> IPAddress | None:
    if not value or len(value) > 64:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse_forwarded(entry: str) -> IPAddress | None:
    text = entry.strip()
    # Some proxies (Azure, IIS) append a port: "203.0.113.7:51234", "[2001:db8::1]:443".
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        text = host
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    return _parse_ip(text)


def _is_trusted(address: IPAddress, trusted_proxies: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted_proxies)
