"""Rewriter throughput on generated pages: `python benchmarks/rewriter.py`.

Prints MB/s for a page handed over in one piece and streamed in 64 KiB chunks, with 0 and 5
slots, next to `bytes.find` over the same page (the ceiling).
"""

from __future__ import annotations

import timeit

from edge_personalize.rewriter import SlotRewriter

ITEM = (
    '<li class="product"><a href="/products/{i}" title="Product {i}">'
    '<img src="/img/{i}.jpg" alt="Product {i}" width="120" height="90"></a>'
    '<span class="price">{i}.00</span><!-- item {i} --></li>\n'
)


def page(size: int, slots: int) -> bytes:
    head = '<!doctype html><html><head><title>Shop</title><script>var a = "<div>";</script></head><body><ul>\n'
    body = []
    i = 0
    while len(head) + sum(map(len, body)) < size:
        body.append(ITEM.format(i=i))
        i += 1
    step = max(1, len(body) // (slots + 1))
    for n in range(slots):
        body.insert((n + 1) * step, f'<section data-personalize="s{n}"><h2>Default {n}</h2><p>Text</p></section>\n')
    return (head + "".join(body) + "</ul></body></html>").encode()


def replace(name: str, inner: bytes) -> bytes:
    return b"<h2>Personalized</h2>"


def one_piece(html: bytes) -> None:
    SlotRewriter(replace).close(html)


def streamed(html: bytes, chunk: int = 64 * 1024) -> None:
    rewriter = SlotRewriter(replace)
    for i in range(0, len(html), chunk):
        rewriter.feed(html[i : i + chunk])
    rewriter.close()


def mbps(func: object, html: bytes) -> float:
    timer = timeit.Timer(lambda: func(html))  # type: ignore[operator]
    number, _ = timer.autorange()
    best = min(timer.repeat(repeat=5, number=number)) / number
    return len(html) / best / 1e6


def main() -> None:
    print(f"{'page':>14} {'find':>10} {'one piece':>10} {'streamed':>10}  (MB/s)")
    for size in (10_000, 100_000, 1_000_000):
        for slots in (0, 5):
            html = page(size, slots)
            ceiling = mbps(lambda h: h.find(b"data-personalize-x"), html)
            print(
                f"{len(html) // 1000:>5} KB {slots} sl {ceiling:>10.0f} {mbps(one_piece, html):>10.0f}"
                f" {mbps(streamed, html):>10.0f}"
            )


if __name__ == "__main__":
    main()
