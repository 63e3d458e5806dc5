"""The demo shop behind the least a middleware that sends kept responses again can do.

For `benchmarks/protocol.py` and `network.py`: a middleware that keys each request by a keyed
BLAKE2b digest of its path, query and the headers a visitor context reads (encoded and digested
as the real middleware does), wraps `send`, and answers "/" with the personalized page's bytes
(`same_bytes_shop.py`) whenever the app's status, headers and body are the ones it saw before
for that key. No routes, switches, consent, policy or bounds: what is left is the price of being
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
        self.kept: dict[bytes, tuple[int, list[tuple[bytes, bytes]], bytes]] = {}  # the app's answer by key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/":
            await self.app(scope, receive, send)
            return
        inputs = key_inputs(READ, b"", scope["headers"], scope["path"], scope["query_string"], "")
        assert inputs is not None
        hasher = self.hasher.copy()
        hasher.update(inputs)
        key = hasher.digest()
        kept = self.kept.get(key)
        start: Message = {}

        async def send_kept(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if kept is not None and (message["status"] != kept[0] or message["headers"] != kept[1]):
                    raise RuntimeError("the shop's home page changed")
                start = message
                return
            body = message.get("body", b"")
            if kept is None:
                self.kept[key] = start["status"], list(start["headers"]), body
            elif body != kept[2]:
                raise RuntimeError("the shop's home page changed")
            await send({**start, "headers": list(HEADERS)})
            await send({"type": "http.response.body", "body": BODY})

        await self.app(scope, receive, send_kept)


app = Starlette(routes=shop.routes)
app.add_middleware(LeastReplay)
