from __future__ import annotations

import ipaddress
import shutil
import sys
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from edge_personalize.signals.location import (
    PROVIDERS,
    UNKNOWN_LOCATION,
    GeoIPLocator,
    HeaderLocator,
    Location,
    LocationError,
    ProviderHeaders,
    client_ip,
    provider_headers,
)

GEOIP = Path(__file__).parent / "data" / "geoip"
CITY_DB = GEOIP / "GeoLite2-City-Test.mmdb"
COUNTRY_DB = GEOIP / "GeoLite2-Country-Test.mmdb"


def wire(value: str) -> str:
    """A header value as an ASGI server hands it over: UTF-8 bytes decoded as latin-1."""
    return value.encode("utf-8").decode("latin-1")


def request_headers(**values: str) -> Headers:
    return Headers(raw=[(k.replace("_", "-").lower().encode(), v.encode("latin-1")) for k, v in values.items()])


def locate(provider: str, **values: str) -> Location:
    return HeaderLocator(provider_headers(provider)).locate(request_headers(**values))


# --- CDN headers -------------------------------------------------------------------------------


def test_cloudflare_country_region_and_city() -> None:
    location = locate("cloudflare", CF_IPCountry="GB", cf_region_code="ENG", cf_ipcity="London")
    assert location == Location("GB", "ENG", "London", "CF-IPCountry")


def test_cloudflare_country_only_without_managed_transform() -> None:
    assert locate("cloudflare", CF_IPCountry="DE") == Location("DE", None, None, "CF-IPCountry")


def test_vercel_city_is_percent_decoded() -> None:
    location = locate(
        "vercel", x_vercel_ip_country="SE", x_vercel_ip_country_region="E", x_vercel_ip_city="Link%C3%B6ping"
    )
    assert location == Location("SE", "E", "Linköping", "x-vercel-ip-country")


def test_vercel_city_with_broken_percent_encoding_is_unknown() -> None:
    location = locate("vercel", x_vercel_ip_country="SE", x_vercel_ip_city="Link%F6ping")
    assert location == Location("SE", None, None, "x-vercel-ip-country")


def test_cloudfront_headers() -> None:
    location = locate(
        "cloudfront",
        CloudFront_Viewer_Country="US",
        CloudFront_Viewer_Country_Region="MI",
        CloudFront_Viewer_City="Ann Arbor",
    )
    assert location == Location("US", "MI", "Ann Arbor", "CloudFront-Viewer-Country")


def test_fastly_headers_set_in_vcl() -> None:
    location = locate("fastly", Fastly_Geo_Country="JP", Fastly_Geo_Region="13", Fastly_Geo_City=wire("Tōkyō"))
    assert location == Location("JP", "13", "Tōkyō", "Fastly-Geo-Country")


def test_appengine_lower_case_region_is_upper_cased_and_city_kept() -> None:
    location = locate("appengine", X_AppEngine_Country="US", X_AppEngine_Region="ca", X_AppEngine_City="mountain view")
    assert location == Location("US", "CA", "mountain view", "X-AppEngine-Country")


def test_appengine_unresolved_city_question_mark_is_unknown() -> None:
    location = locate("appengine", X_AppEngine_Country="US", X_AppEngine_Region="ca", X_AppEngine_City="?")
    assert location == Location("US", "CA", None, "X-AppEngine-Country")


def test_akamai_edgescape_is_parsed() -> None:
    edgescape = (
        "georegion=246,country_code=US,region_code=CA,city=SANFRANCISCO,dma=807,pmsa=7360,"
        "areacode=415,county=SANFRANCISCO,fips=06075,lat=37.7795,long=-122.4195,timezone=PST,"
        "zip=94101-94112+94114-94134,continent=NA,throughput=vhigh,asnum=7018"
    )
    location = locate("akamai", X_Akamai_Edgescape=edgescape)
    assert location == Location("US", "CA", "SANFRANCISCO", "X-Akamai-Edgescape")


def test_akamai_reserved_values_are_unknown() -> None:
    edgescape = "georegion=1,country_code=reserved,region_code=reserved,city=reserved"
    assert locate("akamai", X_Akamai_Edgescape=edgescape) == UNKNOWN_LOCATION


def test_custom_provider_uses_the_given_names() -> None:
    headers = provider_headers("custom", country_header="X-Country", city_header="X-City")
    assert headers == ProviderHeaders("x-country", None, "x-city")
    location = HeaderLocator(headers).locate(request_headers(x_country="fr", x_city="Paris"))
    assert location == Location("FR", None, "Paris", "x-country")


def test_value_that_is_already_text_is_kept() -> None:
    # Not latin-1, so it cannot be bytes an ASGI server decoded: a server or caller that decodes UTF-8 itself.
    locator = HeaderLocator(PROVIDERS["cloudflare"])
    location = locator.locate({"cf-ipcountry": "PL", "cf-ipcity": "Łódź"})
    assert location.city == "Łódź"


def test_utf8_city_sent_raw_is_recovered() -> None:
    location = locate("cloudflare", CF_IPCountry="DE", cf_ipcity=wire("München"))
    assert location.city == "München"


def test_no_headers_is_unknown() -> None:
    for provider in PROVIDERS:
        assert locate(provider) == UNKNOWN_LOCATION


@pytest.mark.parametrize("code", ["XX", "T1", "A1", "A2", "O1", "EU", "AP", "ZZ", "--", "", " ", "**", "G", "GBR"])
def test_pseudo_and_malformed_country_codes_are_unknown(code: str) -> None:
    assert locate("cloudflare", CF_IPCountry=code, cf_region_code="ENG", cf_ipcity="London") == UNKNOWN_LOCATION


def test_lower_case_country_is_upper_cased() -> None:
    assert locate("cloudflare", CF_IPCountry=" gb ").country == "GB"


def test_non_ascii_letters_are_not_a_country() -> None:
    # "ß".upper() is "SS": letters outside ASCII must not turn into a code.
    assert locate("cloudflare", CF_IPCountry=wire("ß")) == UNKNOWN_LOCATION
    assert HeaderLocator(PROVIDERS["cloudflare"]).locate({"cf-ipcountry": "ǅǅ"}) == UNKNOWN_LOCATION


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("US-CA", "CA"),
        ("us-ca", "CA"),
        ("CA", "CA"),
        ("WA", "WA"),
        ("22", "22"),
        ("ENG", "ENG"),
        ("GB-CA", None),  # another country's prefix: inconsistent, dropped
        ("CALI", None),
        ("C-A", None),
        ("", None),
        ("--", None),
        ("US-", None),
    ],
)
def test_region_codes_are_reduced_and_validated(raw: str, expected: str | None) -> None:
    location = locate("cloudflare", CF_IPCountry="US", cf_region_code=raw)
    assert location.region == expected


def test_region_and_city_are_dropped_when_country_unknown() -> None:
    assert locate("cloudflare", CF_IPCountry="XX", cf_region_code="CA", cf_ipcity="Paris") == UNKNOWN_LOCATION


@pytest.mark.parametrize(
    "city",
    [
        "",
        "   ",
        "--",
        "0",
        "Lon\x00don",
        "Lon\ndon",
        "Lon\u202edon",  # bidi override would let a visitor-visible name lie
        "Lon\u200bdon",
        "x" * 101,
    ],
)
def test_implausible_city_names_are_unknown(city: str) -> None:
    location = HeaderLocator(PROVIDERS["cloudflare"]).locate({"cf-ipcountry": "GB", "cf-ipcity": city})
    assert location == Location("GB", None, None, "CF-IPCountry")


def test_city_is_stripped_and_keeps_markup_for_later_escaping() -> None:
    location = locate("cloudflare", CF_IPCountry="GB", cf_ipcity="  <b>Bath</b>  ")
    assert location.city == "<b>Bath</b>"


def test_invalid_utf8_decoded_as_latin1_is_unknown() -> None:
    location = locate("cloudflare", CF_IPCountry="SE", cf_ipcity="Link\xf6ping")
    assert location == Location("SE", None, None, "CF-IPCountry")


HOSTILE = [
    "A" * 65536,
    "GB" + " " * 65536,
    "\x00",
    "GB\x00",
    "\xff\xfe\xfd",
    "%00%ff",
    "=,=,=,,,country_code=,city=",
    "country_code=GB," * 4000,
    "\r\n",
    "\U0001d53e\U0001d539",  # mathematical double-struck "GB"
]


@pytest.mark.parametrize("provider", [*PROVIDERS])
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_values_never_raise(provider: str, value: str) -> None:
    spec = PROVIDERS[provider]
    names = {spec.country, spec.region, spec.city} - {None}
    location = HeaderLocator(spec).locate({name: value for name in names if name})
    assert location.country in (None, "GB")
    if location.country is None:
        assert location == UNKNOWN_LOCATION


def test_huge_city_next_to_valid_country_is_unknown() -> None:
    location = locate("vercel", x_vercel_ip_country="GB", x_vercel_ip_city="%41" * 20000)
    assert location == Location("GB", None, None, "x-vercel-ip-country")


# --- Vary ----------------------------------------------------------------------------------


def test_vary_on_country_only() -> None:
    assert HeaderLocator(PROVIDERS["cloudflare"]).vary_headers({"country"}) == ["cf-ipcountry"]


def test_vary_on_city_includes_the_country_header() -> None:
    assert HeaderLocator(PROVIDERS["vercel"]).vary_headers(["city"]) == ["x-vercel-ip-country", "x-vercel-ip-city"]


def test_vary_on_all_fields() -> None:
    locator = HeaderLocator(PROVIDERS["cloudfront"])
    assert locator.vary_headers({"country", "region", "city"}) == [
        "cloudfront-viewer-country",
        "cloudfront-viewer-country-region",
        "cloudfront-viewer-city",
    ]


def test_vary_for_akamai_names_its_one_header_once() -> None:
    assert HeaderLocator(PROVIDERS["akamai"]).vary_headers({"country", "region", "city"}) == ["x-akamai-edgescape"]


def test_vary_nothing_when_no_location_field_is_read() -> None:
    assert HeaderLocator(PROVIDERS["cloudflare"]).vary_headers(()) == []


def test_vary_skips_fields_the_provider_cannot_send() -> None:
    locator = HeaderLocator(provider_headers("custom", country_header="x-country"))
    assert locator.vary_headers({"region", "city"}) == ["x-country"]


def test_vary_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="postcode"):
        HeaderLocator(PROVIDERS["cloudflare"]).vary_headers({"country", "postcode"})


# --- provider_headers ----------------------------------------------------------------------


def test_every_provider_is_known() -> None:
    assert set(PROVIDERS) == {"cloudflare", "vercel", "cloudfront", "fastly", "akamai", "appengine"}
    for name, spec in PROVIDERS.items():
        assert provider_headers(name) is spec
        assert spec.country == spec.country.lower()


def test_unknown_provider_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown location provider 'cloudflair'.*cloudflare.*custom"):
        provider_headers("cloudflair")


def test_custom_without_country_header_is_refused() -> None:
    with pytest.raises(ValueError, match="country_header"):
        provider_headers("custom", city_header="x-city")


def test_custom_with_invalid_header_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid HTTP header name"):
        provider_headers("custom", country_header="x country")


def test_header_names_with_a_fixed_provider_are_refused() -> None:
    with pytest.raises(ValueError, match='only used with provider = "custom"'):
        provider_headers("cloudflare", country_header="x-country")


# --- client_ip -----------------------------------------------------------------------------

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def test_no_proxy_the_peer_is_the_client() -> None:
    assert client_ip(("81.2.69.142", 50000), None, PROXIES) == "81.2.69.142"


def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored() -> None:
    assert client_ip(("81.2.69.142", 50000), "216.160.83.56", PROXIES) == "81.2.69.142"


def test_forwarded_for_from_trusted_peer_is_believed() -> None:
    assert client_ip(("10.0.0.5", 50000), "81.2.69.142", PROXIES) == "81.2.69.142"


def test_chain_of_trusted_proxies_is_walked_from_the_right() -> None:
    # The client forged "1.2.3.4"; the first proxy recorded the real address.
    xff = "1.2.3.4, 89.160.20.112, 10.1.1.1, 10.2.2.2"
    assert client_ip(("10.0.0.5", 443), xff, PROXIES) == "89.160.20.112"


def test_all_hops_trusted_gives_the_leftmost() -> None:
    assert client_ip(("10.0.0.5", 443), "10.9.9.9, 10.1.1.1", PROXIES) == "10.9.9.9"


@pytest.mark.parametrize("xff", ["garbage", "81.2.69.142, not-an-ip", "81.2.69.142,,", "", " ", "999.1.1.1", "[::1"])
def test_malformed_forwarded_for_falls_back_to_the_peer(xff: str) -> None:
    assert client_ip(("10.0.0.5", 443), xff, PROXIES) == "10.0.0.5"


def test_malformed_entry_left_of_the_client_does_not_matter() -> None:
    assert client_ip(("10.0.0.5", 443), "junk, 81.2.69.142", PROXIES) == "81.2.69.142"


def test_ports_in_forwarded_for_are_accepted() -> None:
    assert client_ip(("10.0.0.5", 443), "81.2.69.142:51234", PROXIES) == "81.2.69.142"
    assert client_ip(("10.0.0.5", 443), "[2001:218::1]:443", PROXIES) == "2001:218::1"


def test_ipv6_peer_and_client_are_normalised() -> None:
    assert client_ip(("FD00::0001", 443), "2001:0218:0000::1", PROXIES) == "2001:218::1"
    assert client_ip(("2001:218:0::1", 443), None, PROXIES) == "2001:218::1"


def test_ipv4_mapped_address_becomes_ipv4() -> None:
    assert client_ip(("::ffff:10.0.0.5", 443), "::ffff:81.2.69.142", PROXIES) == "81.2.69.142"


def test_no_peer_or_non_ip_peer_gives_none() -> None:
    assert client_ip(None, "81.2.69.142", PROXIES) is None
    assert client_ip(("testclient", 50000), "81.2.69.142", PROXIES) is None


def test_huge_forwarded_for_is_handled() -> None:
    xff = ", ".join(["10.0.0.1"] * 5000) + ", 81.2.69.142"
    assert client_ip(("10.0.0.5", 443), xff, PROXIES) == "81.2.69.142"
    assert client_ip(("10.0.0.5", 443), "\x00" * 65536, PROXIES) == "10.0.0.5"


def test_no_trusted_proxies_means_forwarded_for_is_never_believed() -> None:
    assert client_ip(("127.0.0.1", 443), "81.2.69.142", []) == "127.0.0.1"


# --- GeoIP ---------------------------------------------------------------------------------

CITY_TABLE = [
    ("81.2.69.142", Location("GB", "ENG", "London", "GeoLite2-City-Test.mmdb")),
    ("2.125.160.216", Location("GB", "ENG", "Boxford", "GeoLite2-City-Test.mmdb")),
    ("89.160.20.112", Location("SE", "E", "Linköping", "GeoLite2-City-Test.mmdb")),
    ("216.160.83.56", Location("US", "WA", "Milton", "GeoLite2-City-Test.mmdb")),
    ("175.16.199.0", Location("CN", "22", "Changchun", "GeoLite2-City-Test.mmdb")),
    ("2001:218::1", Location("JP", None, None, "GeoLite2-City-Test.mmdb")),
]
COUNTRY_TABLE = [
    ("81.2.69.142", Location("GB", None, None, "GeoLite2-Country-Test.mmdb")),
    ("2.125.160.216", Location("GB", None, None, "GeoLite2-Country-Test.mmdb")),
    ("89.160.20.112", Location("SE", None, None, "GeoLite2-Country-Test.mmdb")),
    ("216.160.83.56", Location("US", None, None, "GeoLite2-Country-Test.mmdb")),
    # The Country test file simply has no network for this address.
    ("175.16.199.0", UNKNOWN_LOCATION),
    ("2001:218::1", Location("JP", None, None, "GeoLite2-Country-Test.mmdb")),
]
NOT_FOUND = ["127.0.0.1", "10.0.0.1", "1.1.1.1", "::1", "fe80::1", "100.64.0.1", "not-an-ip", "", None]


@pytest.fixture(scope="module")
def city() -> GeoIPLocator:
    return GeoIPLocator(CITY_DB)


@pytest.fixture(scope="module")
def country() -> GeoIPLocator:
    return GeoIPLocator(str(COUNTRY_DB))


@pytest.mark.parametrize(("ip", "expected"), CITY_TABLE)
def test_city_database_lookups(city: GeoIPLocator, ip: str, expected: Location) -> None:
    assert city.locate(ip) == expected


@pytest.mark.parametrize(("ip", "expected"), COUNTRY_TABLE)
def test_country_database_lookups(country: GeoIPLocator, ip: str, expected: Location) -> None:
    assert country.locate(ip) == expected


@pytest.mark.parametrize("ip", NOT_FOUND)
def test_private_reserved_and_missing_addresses_are_unknown(
    city: GeoIPLocator, country: GeoIPLocator, ip: str | None
) -> None:
    assert city.locate(ip) == UNKNOWN_LOCATION
    assert country.locate(ip) == UNKNOWN_LOCATION


def test_region_is_the_largest_subdivision(city: GeoIPLocator) -> None:
    # The file lists England, then West Berkshire.
    assert city.locate("2.125.160.216").region == "ENG"


def test_ipv4_mapped_address_is_looked_up_as_ipv4(city: GeoIPLocator) -> None:
    assert city.locate("::ffff:81.2.69.142").city == "London"


def test_client_ip_feeds_geoip(city: GeoIPLocator) -> None:
    ip = client_ip(("10.0.0.5", 443), "216.160.83.56", PROXIES)
    assert city.locate(ip) == Location("US", "WA", "Milton", "GeoLite2-City-Test.mmdb")


def test_missing_database_names_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "GeoLite2-City.mmdb"
    with pytest.raises(LocationError, match=r"GeoLite2-City\.mmdb: GeoIP database not found; download"):
        GeoIPLocator(missing)


def test_directory_instead_of_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LocationError, match="not found"):
        GeoIPLocator(tmp_path)


@pytest.mark.parametrize("keep", [0, 100, 10_000, 21_000])
def test_truncated_database_fails_at_start_up(tmp_path: Path, keep: int) -> None:
    broken = tmp_path / "GeoLite2-City.mmdb"
    broken.write_bytes(CITY_DB.read_bytes()[:keep])
    with pytest.raises(LocationError, match=r"GeoLite2-City\.mmdb: not a readable MaxMind DB file .*download"):
        GeoIPLocator(broken)


def test_text_file_is_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "GeoLite2-City.mmdb"
    bogus.write_text("<html>404 Not Found</html>")
    with pytest.raises(LocationError, match="not a readable MaxMind DB file"):
        GeoIPLocator(bogus)


def test_database_damaged_inside_yields_unknown_at_runtime(tmp_path: Path) -> None:
    # Metadata intact, part of the search tree overwritten: opening works, some lookups fail.
    data = bytearray(CITY_DB.read_bytes())
    data[2000:6000] = b"\xff" * 4000
    damaged = tmp_path / "GeoLite2-City.mmdb"
    damaged.write_bytes(bytes(data))
    locator = GeoIPLocator(damaged)
    try:
        assert locator.locate("216.160.83.56") == UNKNOWN_LOCATION
        assert locator.locate("2001:218::1") == UNKNOWN_LOCATION
        assert locator.locate("81.2.69.142").city == "London"
    finally:
        locator.close()


def test_database_without_locations_is_refused(tmp_path: Path) -> None:
    # Same file with its metadata claiming another type, as if an ASN database had been configured.
    data = CITY_DB.read_bytes()
    marker = data.rindex(b"\xab\xcd\xefMaxMind.com")
    other = data[:marker] + data[marker:].replace(b"GeoLite2-City", b"GeoLite2-ASN!")
    asn = tmp_path / "GeoLite2-ASN.mmdb"
    asn.write_bytes(other)
    with pytest.raises(LocationError, match=r"GeoLite2-ASN\.mmdb: a 'GeoLite2-ASN!' database has no locations"):
        GeoIPLocator(asn)


def test_copy_of_a_database_reports_its_own_file_name(tmp_path: Path) -> None:
    copy = tmp_path / "site-geo.mmdb"
    shutil.copyfile(COUNTRY_DB, copy)
    locator = GeoIPLocator(copy)
    try:
        assert locator.locate("81.2.69.142").source == "site-geo.mmdb"
    finally:
        locator.close()


def test_without_maxminddb_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "maxminddb", None)
    with pytest.raises(LocationError, match=r"pip install edge-personalize\[geoip\]"):
        GeoIPLocator(CITY_DB)
