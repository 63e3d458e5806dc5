"""The demo shop without the middleware, its home page answering the personalized page's exact bytes.

For `uvicorn benchmarks.same_bytes_shop:app`: "/" renders the home template as the shop does (the
same work), then sends the body and headers the middleware sends a German visitor, made once at
start-up by the real middleware. What this server loses against `bare_shop.py` is the cost of the
larger page and its headers alone; what the real middleware loses against this server is its own.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from benchmarks.pages import scope
from examples.shop.app import PRODUCTS, templates
from examples.shop.app import app as shop


def _personalized() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(shop(scope("/", [(b"accept-language", b"de")]), receive, send))
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return sent[0]["status"], list(sent[0]["headers"]), body


STATUS, HEADERS, BODY = _personalized()


async def home(request: Request) -> Response:
    templates.TemplateResponse(request, "home.html", {"products": PRODUCTS})  # the shop's own work
    response = Response(BODY, status_code=STATUS)
    response.raw_headers = list(HEADERS)
    return response


app = Starlette(routes=[Route("/", home), *(route for route in shop.routes if getattr(route, "path", "") != "/")])
