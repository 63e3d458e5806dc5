"""Small, strict readers of what a visitor's browser posts back: form bodies and return paths."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlsplit

from starlette.datastructures import Headers
from starlette.types import Receive

MAX_FORM_BYTES = 8 * 1024
_ASCII_VISIBLE = "".join(chr(code) for code in range(0x21, 0x7F))


def safe_next(value: str | None) -> str:
    """A same-site relative path to go back to; anything else becomes "/"."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    # A Location header is ASCII: characters beyond it travel percent-encoded as UTF-8.
    return quote(value, safe=_ASCII_VISIBLE)


def same_origin(headers: Headers) -> bool:
    """Whether a POST comes from the site's own pages (there is no token cookie before consent)."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    origin = headers.get("origin")
    if origin is None:
        return True  # not sent by a browser on someone else's page: browsers send Origin on POST
    host = headers.get("host")
    return host is not None and urlsplit(origin).netloc == host


async def read_form(receive: Receive) -> dict[str, str] | None:
    """The url-encoded form fields of a small request body; None when it is too large."""
    body = b""
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more_body = message.get("more_body", False)
        if len(body) > MAX_FORM_BYTES:
            return None
    return dict(parse_qsl(body.decode("latin-1")))
