"""Cost of building a visitor's context from real headers: `python benchmarks/context.py [--smoke]`.

Reads every signal (language, location from a CDN header, referrer, device) as a route whose
rules read all of them would, for a few real header sets, with the User-Agent parse cache cold
(a User-Agent never seen before) and warm (the same User-Agent again).
"""

from __future__ import annotations

import itertools
import time

from common import Row, Section, run_alone

from edge_personalize import Config, LocationSettings, Route, SiteSettings, Slot, Variant
from edge_personalize.context import SignalReaders, VisitorContext

Headers = list[tuple[bytes, bytes]]

HEADER_SETS: dict[str, Headers] = {
    "iPhone Safari, de-AT, from Google, CF-IPCountry": [
        (b"host", b"shop.example"),
        (b"accept-language", b"de-AT,de;q=0.9,en-US;q=0.8,en;q=0.7"),
        (b"cf-ipcountry", b"AT"),
        (b"referer", b"https://www.google.com/"),
        (
            b"user-agent",
            b"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            b"(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        ),
    ],
    "desktop Chrome with client hints, en-US, from a newsletter": [
        (b"host", b"shop.example"),
        (b"accept-language", b"en-US,en;q=0.9"),
        (b"cf-ipcountry", b"US"),
        (b"referer", b"https://mail.google.com/"),
        (b"sec-ch-ua", b'"Chromium";v="126", "Google Chrome";v="126", "Not-A.Brand";v="99"'),
        (b"sec-ch-ua-mobile", b"?0"),
        (
            b"user-agent",
            b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            b"Chrome/126.0.0.0 Safari/537.36",
        ),
    ],
    "Android tablet Firefox, fr, from Facebook": [
        (b"host", b"shop.example"),
        (b"accept-language", b"fr-FR,fr;q=0.8,en-US;q=0.5,en;q=0.3"),
        (b"cf-ipcountry", b"FR"),
        (b"referer", b"https://l.facebook.com/"),
        (b"user-agent", b"Mozilla/5.0 (Android 14; Tablet; rv:127.0) Gecko/127.0 Firefox/127.0"),
    ],
    "Googlebot, no Accept-Language": [
        (b"host", b"shop.example"),
        (
            b"user-agent",
            b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ),
    ],
    "curl, direct": [(b"host", b"shop.example"), (b"user-agent", b"curl/8.5.0"), (b"accept", b"*/*")],
}


def readers() -> SignalReaders:
    variant = Variant(name="v", when={"language": "de"}, html="x", purpose="support")
    config = Config(
        site=SiteSettings(languages=("en", "de", "fr")),
        routes=(Route("/", slots=("s",)),),
        slots={"s": Slot(variants=(variant,))},
        location=LocationSettings(source="header", provider="cloudflare"),
        secret_keys=("benchmark-secret-0123456789",),
    )
    return SignalReaders(config)


def build(signal_readers: SignalReaders, headers: Headers) -> None:
    ctx = VisitorContext(signal_readers, {"type": "http", "headers": headers, "query_string": b""})
    ctx.language, ctx.location, ctx.referral, ctx.device  # noqa: B018


def _with_new_user_agent(headers: Headers, n: int) -> Headers:
    return [(k, v + f" r{n}".encode() if k == b"user-agent" else v) for k, v in headers]


def measure(smoke: bool = False) -> Section:
    section = Section("5. Visitor context", "µs per request, every signal read (lower is better)")
    signal_readers = readers()
    for headers in HEADER_SETS.values():
        build(signal_readers, headers)  # load the public suffix list and CLDR data once
    warm_runs, cold_runs, repeat = (200, 20, 1) if smoke else (20_000, 300, 3)
    counter = itertools.count()
    for name, headers in HEADER_SETS.items():
        warm = cold = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(warm_runs):
                build(signal_readers, headers)
            warm = min(warm, (time.perf_counter() - start) / warm_runs * 1e6)
            # New User-Agents prepared outside the timed loop: only parsing them is measured.
            fresh = [_with_new_user_agent(headers, next(counter)) for _ in range(cold_runs)]
            start = time.perf_counter()
            for new in fresh:
                build(signal_readers, new)
            cold = min(cold, (time.perf_counter() - start) / cold_runs * 1e6)
        section.rows.append(Row(name, {"UA cache warm": warm, "UA cache cold": cold}))
    return section


def main() -> None:
    run_alone(__doc__, measure, "few iterations")


if __name__ == "__main__":
    main()
