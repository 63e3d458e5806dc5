"""Rewriter throughput on generated pages: `python benchmarks/rewriter.py [--smoke]`.

MB/s for our rewriter handed the page in one piece and streamed in 64 KiB chunks, with 0 and 5
slots, next to `bytes.find` over the same page (the ceiling), python-lolhtml doing the same
replacement by the `[data-personalize]` selector, and selectolax (Lexbor) parsing and
serializing the page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common import Row, Section, fmt, per_call, per_call_each, ratio, run_alone
from pages import CHUNK, page, replace

from edge_personalize.rewriter import SlotRewriter

try:
    import lolhtml
except ImportError:  # optional: pip install python-lolhtml
    lolhtml = None
try:
    from selectolax.lexbor import LexborHTMLParser
except ImportError:  # optional: pip install selectolax
    LexborHTMLParser = None

REPLACEMENT = replace("", b"").decode()


def one_piece(html: bytes) -> bytes:
    return SlotRewriter(replace).close(html)


def streamed(chunks: list[bytes]) -> bytes:
    rewriter = SlotRewriter(replace)
    out = [rewriter.feed(chunk) for chunk in chunks]
    out.append(rewriter.close())
    return b"".join(out)


class _LolSlot:
    def element(self, element: lolhtml.Element) -> None:
        element.set_inner_content(REPLACEMENT, lolhtml.ContentType.HTML)


def lol_one_piece(html: bytes) -> bytes:
    out = bytearray()
    rewriter = lolhtml.HTMLRewriter(out.extend)
    rewriter.on("[data-personalize]", _LolSlot())
    rewriter.write(html)
    rewriter.end()
    return bytes(out)


def lol_streamed(chunks: list[bytes]) -> bytes:
    out = bytearray()
    rewriter = lolhtml.HTMLRewriter(out.extend)
    rewriter.on("[data-personalize]", _LolSlot())
    for chunk in chunks:
        rewriter.write(chunk)
    rewriter.end()
    return bytes(out)


def lexbor(html: bytes) -> bytes:
    return LexborHTMLParser(html).html.encode()  # type: ignore[no-any-return]


def measure(smoke: bool = False) -> Section:
    section = Section("1. Rewriter throughput", "MB/s (higher is better); ratios are ours ÷ theirs")
    missing = [name for name, mod in (("python-lolhtml", lolhtml), ("selectolax", LexborHTMLParser)) if mod is None]
    if missing:
        section.notes.append(f"Not installed, so not measured: {', '.join(missing)} (pip install {' '.join(missing)}).")
    sizes = (10_000, 100_000) if smoke else (10_000, 100_000, 1_000_000)
    timing = {"min_time": 0.005, "repeat": 1} if smoke else {"min_time": 0.3, "repeat": 5}

    def mbps(func: Callable[[bytes], object] | None, html: bytes) -> float | None:
        if func is None:
            return None
        return len(html) / per_call(lambda: func(html), **timing) / 1e6

    def side_by_side(
        ours: Callable[[Any], object], theirs: Callable[[Any], object] | None, given: bytes | list[bytes], size: int
    ) -> tuple[float, float | None]:
        # Taking turns, so that a drift in the machine's speed leaves the ratio between them alone.
        funcs = {"ours": lambda: ours(given)}
        if theirs is not None:
            funcs["theirs"] = lambda: theirs(given)
        seconds = per_call_each(funcs, **timing)
        return size / seconds["ours"] / 1e6, size / seconds["theirs"] / 1e6 if theirs else None

    for size in sizes:
        for slots in (0, 5):
            html = page(size, slots)
            # Cut before timing: the rewriter is handed the chunks an app would send.
            chunks = [html[i : i + CHUNK] for i in range(0, len(html), CHUNK)]
            expected = one_piece(html)
            if streamed(chunks) != expected:
                section.notes.append(f"{size // 1000} KB, {slots} slots: streamed output differs from one-piece!")
            if lolhtml is not None and lol_one_piece(html) != expected:
                section.notes.append(f"{size // 1000} KB, {slots} slots: python-lolhtml output differs from ours.")
            find = mbps(lambda h: h.find(b"data-personalize-x"), html)
            lexbor_mbps = mbps(lexbor if LexborHTMLParser else None, html)
            modes: tuple[tuple[str, Callable[[Any], bytes], Callable[[Any], bytes], bytes | list[bytes]], ...] = (
                ("one piece", one_piece, lol_one_piece, html),
                ("64 KiB chunks", streamed, lol_streamed, chunks),
            )
            for mode, ours, theirs, given in modes:
                ours_mbps, lol_mbps = side_by_side(ours, theirs if lolhtml else None, given, len(html))
                row = Row(
                    f"{len(html) // 1000} KB, {slots} slots, {mode}",
                    {
                        "ours": ours_mbps,
                        "bytes.find": find,
                        "lolhtml": lol_mbps,
                        "selectolax": lexbor_mbps,
                        "÷ find": ratio(ours_mbps, find),
                        "x lolhtml": ratio(ours_mbps, lol_mbps),
                        "x selectolax": ratio(ours_mbps, lexbor_mbps),
                    },
                )
                times_lol = row.values["x lolhtml"]
                if slots == 0:
                    row.target = "≥ 1,000 MB/s and ≥ 10x lolhtml"
                    row.measured = f"{fmt(ours_mbps)} MB/s, {fmt(times_lol)}x lolhtml"
                    row.met = None if times_lol is None else bool(ours_mbps >= 1000 and times_lol >= 10)  # type: ignore[operator]
                elif size == 100_000:
                    row.target = "≥ 3x lolhtml"
                    row.measured = f"{fmt(times_lol)}x lolhtml"
                    row.met = None if times_lol is None else bool(times_lol >= 3)  # type: ignore[operator]
                section.rows.append(row)
    return section


def main() -> None:
    run_alone(__doc__, measure, "tiny sizes, few iterations")


if __name__ == "__main__":
    main()
