"""The example shop behind a real shared cache (Varnish, keyed like a CDN caching HTML, see shop.vcl).

Many visitor contexts ask for the same pages in a shuffled, interleaved order. Every answer that
comes through the cache must be the answer the shop gives that same context directly: a variant,
a consent banner or a cookie never crosses from one visitor to another, while the pages nobody
personalizes are still served from the cache.
"""

from __future__ import annotations

import http.client
import itertools
import random
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

HOST = "shop.example"  # the same Host both ways, so a context is exactly the same request
LANGUAGES: dict[str, str | None] = {
    "none": None,
    "de": "de-AT,de;q=0.9,en;q=0.5",
    "fr": "fr-CH,fr;q=0.9,en;q=0.4",
    "en": "en-GB,en;q=0.9",
}
COUNTRIES: dict[str, str | None] = {"none": None, "AT": "AT", "DE": "DE", "US": "US"}
REFERRERS: dict[str, str | None] = {
    "direct": None,
    "search": "https://www.google.com/search?q=alpine+rain+jacket",
    "social": "https://t.co/Xy7pQ2zR",
    "campaign": None,  # a landing URL with campaign tags
}
CAMPAIGN_QUERY = "utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale"
CONSENTS = ("none", "granted", "refused", "gpc")
PERSONALIZED = ("/", "/products", "/products/1")
STANDARD = ("/help/returns", "/privacy")
METHODS = ("GET", "HEAD")
ROUNDS = 3
SEED = 20240611
# What a cache may not change: the rest (Date, Age, Via, X-Varnish, Connection) is the cache's own.
COMPARED = ("content-type", "content-language", "cache-control", "vary", "etag", "last-modified", "expires", "location")
MAX_REPORTED = 12


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name]

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return ", ".join(values) if values else None


class Client:
    """One keep-alive connection to a server; reconnects once if the server closed an idle one."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=10)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.conn.close()

    def request(self, method: str, target: str, headers: Mapping[str, str], body: bytes | None = None) -> Answer:
        for attempt in (1, 2):
            try:
                self.conn.request(method, target, body=body, headers={"Host": HOST, **headers})
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                if attempt == 2:
                    raise
                continue
            if response.will_close:
                self.conn.close()
            return Answer(response.status, tuple(response.getheaders()), data)
        raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Visitor:
    language: str
    country: str
    referrer: str
    consent: str

    def target(self, path: str) -> str:
        return f"{path}?{CAMPAIGN_QUERY}" if self.referrer == "campaign" else path

    def headers(self, cookies: Mapping[str, str]) -> dict[str, str]:
        headers = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}
        if (language := LANGUAGES[self.language]) is not None:
            headers["Accept-Language"] = language
        if (country := COUNTRIES[self.country]) is not None:
            headers["CF-IPCountry"] = country
        if (referrer := REFERRERS[self.referrer]) is not None:
            headers["Referer"] = referrer
        if self.consent in cookies:
            headers["Cookie"] = cookies[self.consent]
        elif self.consent == "gpc":
            headers["Sec-GPC"] = "1"
        return headers

    def __str__(self) -> str:
        return f"language={self.language} country={self.country} referrer={self.referrer} consent={self.consent}"


VISITORS = [Visitor(*context) for context in itertools.product(LANGUAGES, COUNTRIES, REFERRERS, CONSENTS)]


def choose(cache: Client, choice: str) -> Answer:
    form = urlencode({"choice": choice, "next": "/"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return cache.request("POST", "/_personalize/consent", headers, form)


def consent_cookie(answer: Answer) -> str:
    """The `name=value` pair of the cookie a consent answer stores (deletions of other names aside)."""
    pairs = [value.split(";", 1)[0].strip() for value in answer.all("set-cookie")]
    stored = [pair for pair in pairs if pair.partition("=")[2]]
    assert len(stored) == 1, answer.all("set-cookie")
    return stored[0]


@pytest.fixture(scope="module")
def consent_cookies(varnish: Server) -> dict[str, str]:
    """A granted and a refused consent cookie, chosen the way a visitor does: a POST through the cache."""
    cookies = {}
    with Client(varnish) as cache:
        for state, choice in (("granted", "accept"), ("refused", "reject")):
            answer = choose(cache, choice)
            assert answer.status == 303, answer
            assert answer.get("location") == "/"
            cookies[state] = consent_cookie(answer)
    return cookies


def differences(cached: Answer, direct: Answer, method: str) -> list[str]:
    found = []
    if cached.status != direct.status:
        found.append(f"status {cached.status} != {direct.status}")
    for name in COMPARED:
        if cached.get(name) != direct.get(name):
            found.append(f"{name}: {cached.get(name)!r} != {direct.get(name)!r}")
    if method == "HEAD":
        if cached.get("content-length") != direct.get("content-length"):
            found.append(f"content-length: {cached.get('content-length')!r} != {direct.get('content-length')!r}")
    elif cached.body != direct.body:
        found.append(f"body differs ({len(cached.body)} != {len(direct.body)} bytes){first_difference(cached, direct)}")
    if cached.all("set-cookie"):
        found.append(f"set-cookie through the cache: {cached.all('set-cookie')!r}")
    return found


def first_difference(cached: Answer, direct: Answer) -> str:
    at = next((i for i, (a, b) in enumerate(zip(cached.body, direct.body, strict=False)) if a != b), None)
    if at is None:
        return ""
    start = max(at - 60, 0)
    return f" at byte {at}: cache {cached.body[start : at + 60]!r} vs app {direct.body[start : at + 60]!r}"


def interleaved(rng: random.Random) -> Iterator[tuple[Visitor, str, str]]:
    requests = list(itertools.product(VISITORS, PERSONALIZED + STANDARD, METHODS))
    for _ in range(ROUNDS):
        rng.shuffle(requests)
        yield from requests


def test_cache_gives_every_context_what_the_app_gives_it(
    shop_server: Server, varnish: Server, consent_cookies: dict[str, str]
) -> None:
    hits: Counter[str] = Counter()
    served: Counter[str] = Counter()
    mismatches: list[str] = []
    with Client(varnish) as cache, Client(shop_server) as app:
        for visitor, path, method in interleaved(random.Random(SEED)):
            target = visitor.target(path)
            headers = visitor.headers(consent_cookies)
            cached = cache.request(method, target, headers)
            direct = app.request(method, target, headers)
            assert not direct.all("set-cookie"), (
                f"{method} {target} ({visitor}) sets a cookie: {direct.all('set-cookie')}"
            )
            assert cached.get("x-cache") in ("HIT", "MISS"), cached.headers
            served[path] += 1
            hits[path] += cached.get("x-cache") == "HIT"
            if found := differences(cached, direct, method):
                mismatches.append(f"{method} {target} {headers} ({cached.get('x-cache')}): " + "; ".join(found))
    summary = ", ".join(f"{path}: {hits[path]}/{served[path]} hits" for path in served)
    assert not mismatches, f"{len(mismatches)} answers through the cache differ from the app's ({summary}):\n" + (
        "\n".join(mismatches[:MAX_REPORTED])
    )
    for path in STANDARD:
        assert hits[path] > 0, f"{path} is never served from the cache ({summary})"


def test_contexts_get_different_pages(shop_server: Server, consent_cookies: dict[str, str]) -> None:
    """The contexts above are not all alike: otherwise the comparison through the cache would prove little."""
    with Client(shop_server) as app:
        pages = {
            visitor: app.request("GET", visitor.target("/"), visitor.headers(consent_cookies)) for visitor in VISITORS
        }
        products = {
            visitor: app.request("GET", visitor.target("/products"), visitor.headers(consent_cookies))
            for visitor in VISITORS
        }
    assert all(page.status == 200 for page in pages.values())
    assert len({page.body for page in pages.values()}) >= 16
    for visitor, page in pages.items():
        shared_link = visitor.referrer == "social"
        german = b"Willkommen in unserem Laden" in page.body
        assert german == (visitor.language == "de" and not shared_link), visitor
        listing = products[visitor].body
        dach = b"Kostenloser Versand" in listing or b"Free shipping to Germany" in listing
        assert dach == (visitor.country in ("AT", "DE")), visitor  # /products keeps no shared-link rule
        banner = b"data-personalize-banner" in page.body
        assert banner == (visitor.consent == "none" and not shared_link), visitor


def test_consent_choice_goes_to_the_app_every_time(varnish: Server) -> None:
    """POST is never cached: each choice is answered by the app, with its own cookie, and only there."""
    with Client(varnish) as cache:
        answers = [choose(cache, choice) for choice in ("accept", "accept", "reject", "reject")]
    for answer in answers:
        assert answer.status == 303
        assert answer.get("x-cache") == "MISS"
        assert "no-store" in (answer.get("cache-control") or "")
        consent_cookie(answer)
