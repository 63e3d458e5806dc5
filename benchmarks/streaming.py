"""A long page streamed through the middleware: `python benchmarks/streaming.py [--smoke]`.

The bare app sends a 50 MB page in 64 KB body messages (3 slots near the top, then products,
never holding the whole page). Time to first byte is compared in process with the bare app;
peak memory is measured in a fresh subprocess per app, as the growth of the process's maximum
resident set size while the page streams, and as tracemalloc's peak (Python allocations only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from common import Row, Section, table
from pages import GERMAN_VISITOR, StreamedPage, german_config, scope
from starlette.types import ASGIApp, Message

from edge_personalize import PersonalizeMiddleware

MB = 1024 * 1024


def build(kind: str, total: int) -> ASGIApp:
    bare = StreamedPage(total)
    return bare if kind == "bare" else PersonalizeMiddleware(bare, german_config(3))


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def stream(app: ASGIApp) -> dict[str, float]:
    """Stream one response; seconds to the first non-empty body message and to the end, and bytes sent."""
    start = time.perf_counter()
    first: list[float] = []
    sent = [0, 0]  # bytes, slots personalized

    async def send(message: Message) -> None:
        body = message.get("body", b"")
        if body and not first:
            first.append(time.perf_counter())
        sent[0] += len(body)
        sent[1] += body.count(b"Willkommen")

    await app(scope("/", GERMAN_VISITOR), _receive, send)
    end = time.perf_counter()
    return {"ttfb": first[0] - start, "total": end - start, "bytes": sent[0], "personalized": sent[1]}


def child(kind: str, total: int) -> dict[str, Any]:
    """Runs in its own process: memory is measured against a process that has done nothing else."""
    app = build(kind, total)
    asyncio.run(stream(build(kind, 0)))  # one chunk: imports, templates and caches loaded before the baseline
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = asyncio.run(stream(app))
    rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # KiB on Linux
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    asyncio.run(stream(build(kind, total)))
    traced_peak = (tracemalloc.get_traced_memory()[1] - baseline) / MB
    tracemalloc.stop()
    return {**result, "rss_growth_mb": rss_growth, "traced_peak_mb": traced_peak}


def _run_child(kind: str, total: int) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, str(Path(__file__)), "--child", kind, "--bytes", str(total)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output)  # type: ignore[no-any-return]


def _ttfb(kind: str, runs: int) -> float:
    app = build(kind, MB // 4)  # the first byte does not depend on the page's length
    asyncio.run(stream(app))
    return statistics.median(asyncio.run(stream(app))["ttfb"] for _ in range(runs))


def measure(smoke: bool = False) -> Section:
    total = 2 * MB if smoke else 50 * MB
    section = Section(
        f"4. Streaming a {total // MB} MB page in 64 KB chunks", "µs for time to first byte, MB for memory"
    )
    runs = 5 if smoke else 200
    ttfb = {kind: _ttfb(kind, runs) * 1e6 for kind in ("bare", "middleware")}
    added = ttfb["middleware"] - ttfb["bare"]
    section.rows.append(
        Row(
            "time to first byte (median)",
            {"bare app": ttfb["bare"], "with middleware": ttfb["middleware"], "added": added},
            target="≤ bare + 1 ms",
            met=added <= 1000,
            measured=f"bare + {added / 1000:.2f} ms",
        )
    )
    results = {kind: _run_child(kind, total) for kind in ("bare", "middleware")}
    if results["middleware"]["personalized"] != 3 or results["middleware"]["bytes"] < total:
        section.notes.append("Invalid run, not judged: the streamed page was not personalized as expected.")
        for row in section.rows:
            row.met = None
    for key, label in (("rss_growth_mb", "max RSS growth"), ("traced_peak_mb", "tracemalloc peak")):
        bare, ours = results["bare"][key], results["middleware"][key]
        row = Row(label, {"bare app": bare, "with middleware": ours, "added": ours - bare})
        if key == "rss_growth_mb":
            row.target, row.met, row.measured = "< 2 MB", ours < 2, f"{ours:.2f} MB"
        section.rows.append(row)
    ours, bare = results["middleware"]["total"], results["bare"]["total"]
    section.notes.append(
        f"The whole page through the middleware: {ours:.2f} s ({total / MB / ours:.0f} MB/s);"
        f" the bare app alone: {bare:.3f} s."
    )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a 2 MB page, few runs")
    parser.add_argument("--child", choices=("bare", "middleware"), help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, default=50 * MB, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.bytes)))
    else:
        print(table(measure(args.smoke)))


if __name__ == "__main__":
    main()
