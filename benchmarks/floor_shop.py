"""The demo shop behind the least a middleware that sends kept responses again can do.

For `benchmarks/protocol.py` and `network.py`: a middleware that wraps `send`, keys each response
by a keyed BLAKE2b digest of the request's path, query and the headers a visitor context reads
and the app's status and headers (encoded and digested as the real middleware does), and answers
"/" with the personalized page's bytes (`same_bytes_shop.py`) whenever the app's body is the one
it saw before. No routes, switches, consent, policy or bounds: what is left is the price of being
such a middleware at all, which the real one cannot go below.
"""

from __future__ import annotations

import hashlib
import secrets

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from benchmarks.same_bytes_shop import BODY, HEADERS
from edge_personalize.config import load_config
from edge_personalize.context import SignalReaders
from edge_personalize.replay import key_inputs
from examples.shop.app import HERE
from examples.shop.app import app as shop

READ = SignalReaders(load_config(HERE / "personalize.toml")).request_headers  # what a context may read


class LeastReplay:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.hasher = hashlib.blake2b(key=secrets.token_bytes(32), digest_size=32)
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
            inputs = key_inputs(
                READ, b"", scope["headers"], scope["path"], scope["query_string"], "", start["status"], start["headers"]
            )
            assert inputs is not None
            hasher = self.hasher.copy()
            hasher.update(inputs)
            key = hasher.digest()
            body = message.get("body", b"")
            if self.kept.setdefault(key, body) != body:
                raise RuntimeError("the shop's home page changed")
            await send({**start, "headers": list(HEADERS)})
            await send({"type": "http.response.body", "body": BODY})

        await self.app(scope, receive, send_kept)


app = Starlette(routes=shop.routes)
app.add_middleware(LeastReplay)
