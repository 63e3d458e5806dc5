"""Cost of building a visitor's context from real headers: `python benchmarks/context.py`.

Reads every signal (language, location from a CDN header, referrer, device) as a route whose
rules read all of them would, with the User-Agent parse cache cold and warm.
"""

from __future__ import annotations

import time

from edge_personalize import Config, LocationSettings, Route, SiteSettings, Slot, Variant
from edge_personalize.context import SignalReaders, VisitorContext

HEADERS = [
    (b"accept-language", b"de-AT,de;q=0.9,en-US;q=0.8,en;q=0.7"),
    (b"cf-ipcountry", b"AT"),
    (b"referer", b"https://www.google.com/"),
    (b"host", b"shop.example"),
    (
        b"user-agent",
        b"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        b"(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    ),
]


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


def build(signal_readers: SignalReaders, ua_suffix: bytes = b"") -> None:
    headers = [*HEADERS[:-1], (b"user-agent", HEADERS[-1][1] + ua_suffix)]
    ctx = VisitorContext(signal_readers, {"type": "http", "headers": headers, "query_string": b""})
    ctx.language, ctx.location, ctx.referral, ctx.device  # noqa: B018


def per_call_us(func: object, runs: int) -> float:
    start = time.perf_counter()
    for i in range(runs):
        func(i)  # type: ignore[operator]
    return (time.perf_counter() - start) / runs * 1e6


def main() -> None:
    signal_readers = readers()
    build(signal_readers)  # load the public suffix list and CLDR data once
    warm = per_call_us(lambda i: build(signal_readers), 20000)
    cold = per_call_us(lambda i: build(signal_readers, f" r{i}".encode()), 300)
    print(f"context with every signal, User-Agent parse cached:   {warm:8.1f} µs")
    print(f"context with every signal, User-Agent parse uncached: {cold:8.1f} µs")


if __name__ == "__main__":
    main()
