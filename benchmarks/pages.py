"""Generated HTML pages and the small ASGI apps that serve them, shared by the benchmarks."""

from __future__ import annotations

from collections.abc import Iterator

from starlette.types import Receive, Scope, Send

from edge_personalize import Config, LocationSettings, Route, SiteSettings, Slot, Variant

ITEM = (
    '<li class="product"><a href="/products/{i}" title="Product {i}">'
    '<img src="/img/{i}.jpg" alt="Product {i}" width="120" height="90"></a>'
    '<span class="price">{i}.00</span><!-- item {i} --></li>\n'
)
HEAD = (
    '<!doctype html><html><head><meta charset="utf-8"><title>Shop</title>'
    '<script>var a = "<div>";</script></head><body><ul>\n'
)
TAIL = "</ul></body></html>"
SLOT_NAMES = ("hero", "promo", "shipping", "welcome", "footer")
CHUNK = 64 * 1024


def slot_html(name: str) -> str:
    return f'<section data-personalize="{name}"><h2>Default {name}</h2><p>Text</p></section>\n'


def items(size: int, start: int = 0) -> list[str]:
    """Product list items adding up to about `size` bytes."""
    out: list[str] = []
    total = 0
    i = start
    while total < size:
        out.append(ITEM.format(i=i))
        total += len(out[-1])
        i += 1
    return out


def page(size: int, slots: int) -> bytes:
    """A page of about `size` bytes with `slots` marked fragments spread evenly through it."""
    body = items(size - len(HEAD) - len(TAIL))
    step = max(1, len(body) // (slots + 1))
    for n in range(slots):
        body.insert((n + 1) * step + n, slot_html(SLOT_NAMES[n % len(SLOT_NAMES)] + ("" if n < 5 else str(n))))
    return (HEAD + "".join(body) + TAIL).encode()


def replace(name: str, inner: bytes) -> bytes:
    return b"<h2>Personalized</h2>"


def german_config(slots: int = 3) -> Config:
    """Every slot gets a German variant; location is not read, so no header beyond Accept-Language matters."""
    names = SLOT_NAMES[:slots]
    return Config(
        site=SiteSettings(languages=("en", "de")),
        routes=(Route("/", slots=names),),
        slots={
            name: Slot(
                variants=(
                    Variant(
                        name=f"{name}-de",
                        when={"language": "de"},
                        html=f"<h2>Willkommen ({name})</h2>",
                        purpose="support",
                    ),
                )
            )
            for name in names
        },
        location=LocationSettings(source="none"),
        secret_keys=("benchmark-secret-0123456789abcdef",),
    )


def html_headers(length: int | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"etag", b'"v1"')]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return headers


class StaticPage:
    """The bare app: one precomputed page in one body message, on every path."""

    def __init__(self, body: bytes) -> None:
        self.start = {"type": "http.response.start", "status": 200, "headers": html_headers(len(body))}
        self.body = {"type": "http.response.body", "body": body, "more_body": False}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Fresh messages: a middleware may change the ones it is given.
        await send({**self.start, "headers": list(self.start["headers"])})
        await send(dict(self.body))


class StreamedPage:
    """The bare app: `chunks()` sent one body message each, never holding the whole page."""

    def __init__(self, total: int = 50 * 1024 * 1024, slots: int = 3) -> None:
        self.total = total
        self.first = page(CHUNK, slots)[: -len(TAIL)]
        self.block = "".join(items(CHUNK - len(ITEM))).encode()  # whole items, so chunks join into valid HTML

    def chunks(self) -> Iterator[bytes]:
        yield self.first
        sent = len(self.first)
        while sent < self.total:
            yield self.block
            sent += len(self.block)
        yield TAIL.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": html_headers(None)})
        for chunk in self.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def scope(path: str = "/", headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"shop.example"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


GERMAN_VISITOR = [
    (b"accept-language", b"de-DE,de;q=0.9,en;q=0.8"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (
        b"user-agent",
        b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    ),
]
