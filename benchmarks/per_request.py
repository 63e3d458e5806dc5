"""Per-request cost in process: `python benchmarks/per_request.py [--smoke]`.

Drives ASGI apps directly (`await app(scope, receive, send)` in a loop, no network) and reports
the microseconds each middleware adds to a bare app that sends a precomputed page: on a route
the policy does not personalize, and on a personalized 30 KB page with 3 slots and their
badges, next to what Starlette's GZipMiddleware adds to the same page.
"""

from __future__ import annotations

import asyncio
import time

from common import Row, Section, fmt, ratio, run_alone
from pages import GERMAN_VISITOR, StaticPage, german_config, page, scope
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Scope

from edge_personalize import PersonalizeMiddleware
from edge_personalize.cache import BoundedCache


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    pass


async def _per_request(app: ASGIApp, request: Scope, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        await app(dict(request), _receive, _send)
    return (time.perf_counter() - start) / number


async def _best(apps: dict[str, ASGIApp], request: Scope, *, min_time: float, repeat: int) -> dict[str, float]:
    """µs per request of each app, best of `repeat` rounds of about `min_time` seconds each; the apps take
    turns so that drift in the machine's speed hits all of them alike."""
    numbers: dict[str, int] = {}
    for name, app in apps.items():
        await _per_request(app, request, 3)  # warm caches and templates
        elapsed = await _per_request(app, request, 10)
        numbers[name] = max(10, int(min_time / elapsed))
    best = {name: float("inf") for name in apps}
    for _ in range(repeat):
        for name, app in apps.items():
            best[name] = min(best[name], await _per_request(app, request, numbers[name]) * 1e6)
    return best


async def _check(app: ASGIApp, request: Scope) -> bytes:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(dict(request), _receive, send)
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def _measure(smoke: bool) -> Section:
    section = Section("2. Per-request cost in process", "µs per request (lower is better)")
    html = page(30_000, 3)
    bare = StaticPage(html)
    personalized = PersonalizeMiddleware(bare, german_config(3))
    gzip = GZipMiddleware(bare)
    min_time, repeat = (0.01, 1) if smoke else (0.25, 7)

    body = await _check(personalized, scope("/", GERMAN_VISITOR))
    valid = body.count(b"Willkommen") == 3
    if not valid:
        section.notes.append("Invalid run, not judged: the page did not get its 3 variants.")

    other = scope("/about", GERMAN_VISITOR)
    times = await _best({"bare": bare, "middleware": personalized}, other, min_time=min_time, repeat=repeat)
    added = times["middleware"] - times["bare"]
    section.rows.append(
        Row(
            "route not personalized (/about)",
            {"bare app": times["bare"], "with middleware": times["middleware"], "added": added},
            target="< 2 µs added",
            met=added < 2,
            measured=f"{fmt(added)} µs added",
        )
    )

    home = scope("/", GERMAN_VISITOR)
    times = await _best(
        {"bare": bare, "middleware": personalized, "gzip": gzip}, home, min_time=min_time, repeat=repeat
    )
    added = times["middleware"] - times["bare"]
    gzip_added = times["gzip"] - times["bare"]
    share = ratio(added, gzip_added)
    section.rows.append(
        Row(
            f"{len(html) // 1000} KB page, 3 slots + badges, Accept-Language: de",
            {
                "bare app": times["bare"],
                "with middleware": times["middleware"],
                "added": added,
                "GZip added": gzip_added,
                "added ÷ GZip added": share,
            },
            target="< 1/3 of GZip's",
            met=share is not None and share < 1 / 3 if valid else None,
            measured=f"{fmt(added)} µs added, {fmt(share)}x GZip's {fmt(gzip_added)} µs",
        )
    )
    # A new request of the same kind (another browser, the same language): the rewritten page
    # is kept, the response for these exact request headers is not.
    same_kind = PersonalizeMiddleware(bare, german_config(3))
    same_kind.responses = BoundedCache(max_bytes=0)
    # A visitor never seen before: nothing kept, every request decided and rewritten.
    afresh = PersonalizeMiddleware(bare, german_config(3))
    afresh.responses = BoundedCache(max_bytes=0)
    afresh.personalizer.pages = BoundedCache(max_bytes=0)
    times = await _best(
        {"bare": bare, "same kind": same_kind, "afresh": afresh}, home, min_time=min_time, repeat=repeat
    )
    for label, name in (("from the page cache", "same kind"), ("made afresh each time", "afresh")):
        added = times[name] - times["bare"]
        section.rows.append(
            Row(
                f"{len(html) // 1000} KB page as above, {label}",
                {
                    "bare app": times["bare"],
                    "with middleware": times[name],
                    "added": added,
                    "GZip added": gzip_added,
                    "added ÷ GZip added": ratio(added, gzip_added),
                },
            )
        )
    section.notes.append(
        "GZipMiddleware with Starlette's defaults (compresslevel 9), request with Accept-Encoding: gzip. "
        "The target row sends the same request again and again (a reload, a probe, visitors whose "
        "browsers send the same headers): from the second request on, the response kept for those "
        "exact inputs is sent again. The next row keeps only rewritten pages (what a new request of the "
        "same kind meets: context and decisions made, page from the page cache); the last keeps nothing."
    )
    return section


def measure(smoke: bool = False) -> Section:
    return asyncio.run(_measure(smoke))


def main() -> None:
    run_alone(__doc__, measure, "few iterations")


if __name__ == "__main__":
    main()
