"""The demo shop behind the least a middleware that sends kept responses again can do.

For `benchmarks/protocol.py` and `network.py`: a middleware that wraps `send`, keys each response
by a keyed BLAKE2b digest of the request's path, query and headers and the app's status and
headers, and answers "/" with the personalized page's bytes (`same_bytes_shop.py`) whenever the
app's body is the one it saw before. No routes, switches, consent, policy or bounds: what is
left is the price of being such a middleware at all, which the real one cannot go below.
"""

from __future__ import annotations

import hashlib
import marshal
import secrets

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from benchmarks.same_bytes_shop import BODY, HEADERS
from examples.shop.app import app as shop


class LeastReplay:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.secret = secrets.token_bytes(32)
        self.kept: dict[bytes, bytes] = {}  # the app's body by key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/":
            await self.app(scope, receive, send)
            return
        start: Message = {}

        async def send_kept(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            inputs = (scope["path"], scope["query_string"], scope["headers"], start["status"], start["headers"])
            key = hashlib.blake2b(marshal.dumps(inputs, 2), key=self.secret, digest_size=32).digest()
            body = message.get("body", b"")
            if self.kept.setdefault(key, body) != body:
                raise RuntimeError("the shop's home page changed")
            await send({**start, "headers": list(HEADERS)})
            await send({"type": "http.response.body", "body": BODY})

        await self.app(scope, receive, send_kept)


app = Starlette(routes=shop.routes)
app.add_middleware(LeastReplay)
