"""ASGI plumbing: pick the responses to personalize and stream them through the rewriter."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_personalize.admin import Owner, OwnerAuth
from edge_personalize.cache import BoundedCache
from edge_personalize.config import Config, PolicyFile, load_config
from edge_personalize.consent import (
    COOKIE_NAME,
    NO_CONSENT,
    ConsentManager,
    ConsentReader,
    needs_consent,
    settled_until,
)
from edge_personalize.context import SignalReaders, VisitorContext
from edge_personalize.endpoints import Endpoints
from edge_personalize.personalizer import Page, Personalizer
from edge_personalize.preview import PREVIEW_PARAM, Previews, Simulation
from edge_personalize.replay import Replay, ReplayKey, byte_pairs, key_inputs
from edge_personalize.rewriter import SlotRewriter
from edge_personalize.routes import RoutePlan, RouteTable
from edge_personalize.switches import Level, Switches, open_store

logger = logging.getLogger("edge_personalize")
Keep = tuple[BoundedCache[Replay], ReplayKey]  # where a response is kept to be sent again, and its key
TRACE_HEADER = b"x-personalize-trace"  # the owner asks for a trace of a live page with it
FIRST_BYTES = 8 * 1024  # of a streamed body, sent before the rest of its first chunk is rewritten
# How often requests look for a new policy file and new switches, in seconds: once per this
# interval, not on every request (the policy file is read at most once a second all the same).
LOOK_AGAIN = 0.1

# Charsets in which ASCII bytes mean ASCII characters, so markup can be found in raw bytes.
ASCII_COMPATIBLE = frozenset(
    {"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252", "cp1252", "iso-8859-15"}
)


class PersonalizeMiddleware:
    """Personalize marked fragments of HTML pages on the configured routes.

    `config` is a path to a TOML file or a `Config`. Place it inside any compression middleware
    (add it before GZipMiddleware), because compressed bodies are passed through untouched.
    A site that runs its own consent manager passes `consent`, a callable that reads the
    visitor's choice from the request; the built-in banner and cookie are then not used.
    `owner_auth`, a callable receiving the request, opens the owner page (as does a hashed token
    in `owner.token_hash_env`). `clock` (returning an aware datetime) replaces the system clock,
    for tests and simulations.
    """

    def __init__(
        self,
        app: ASGIApp,
        config: Config | str | os.PathLike[str],
        *,
        consent: ConsentReader | None = None,
        owner_auth: OwnerAuth | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.app = app
        self._options = (consent, owner_auth, clock)
        # A policy read from a file follows the file: an edit applies within a second, and an
        # invalid edit keeps the last good policy (and says why, once).
        self._policy = None if isinstance(config, Config) else PolicyFile(Path(config))
        self._build(config if isinstance(config, Config) else load_config(config))

    def _build(self, config: Config) -> None:
        consent, owner_auth, clock = self._options
        self.config = config
        self.signing_keys = self.config.signing_keys()
        self.readers = SignalReaders(self.config)
        self.consent = ConsentManager(self.config, self.signing_keys, reader=consent, clock=clock)
        # A site that keeps nothing about its visitors never asks, and its pages never depend on a cookie.
        self.consent_dependent = needs_consent(self.config)
        self.show_banner = self.consent_dependent and consent is None
        self.personalizer = Personalizer(self.config, self.readers, corrections=self.show_banner)
        disabled = os.environ.get("EDGE_PERSONALIZE_DISABLED", "").strip().lower() in {"1", "true", "yes", "on"}
        self.routes = RouteTable(
            self.config, self.readers.cache_keys, enabled=not disabled, consent_dependent=self.consent_dependent
        )
        self.switches = open_store(self.config.resolve(self.config.owner.switches), self.config.owner.redis_url)
        self._switches = self.switches.current()  # what requests follow, looked at again every LOOK_AGAIN
        self._look_again_at = time.monotonic() + LOOK_AGAIN
        self.owner = Owner(self.config, self.signing_keys, owner_auth)
        self.previews = Previews(self.signing_keys)
        # How often each variant was shown since start, and how many views were held out: no visitor data.
        # A `defaultdict`, not a `Counter`: as fast as a dict where a kept response is sent again.
        self.counts: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.endpoints = Endpoints(self)
        # Whole responses made before, by a keyed digest of the request values they were made from
        # (the path and query and the headers a context reads, never those values themselves) and the
        # switches, each with the app's status, headers and body it was made from: twice the page
        # cache's bound per item. Not with the site's own consent reader, which may read anything.
        self.responses: BoundedCache[Replay] = BoundedCache(max_bytes=4 * 1024 * 1024, max_item_bytes=512 * 1024)
        self.replay_hasher = (
            None if consent is not None else hashlib.blake2b(key=secrets.token_bytes(32), digest_size=32)
        )
        self._preview_marker = f"{PREVIEW_PARAM}=".encode()
        self._keyed_headers = self.readers.request_headers
        self._keys_address = self.readers.geoip is not None  # the location comes from the client address
        self._endpoint_root = self.config.site.endpoint_prefix + "/"
        self.standard_param = self.config.site.standard_param
        self._standard_marker = f"{self.standard_param}=".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                send = self._closing_on_shutdown(send)
            await self.app(scope, receive, send)
            return
        now = time.monotonic()
        if now >= self._look_again_at:
            self._look_again(now)
        path: str = scope["path"]
        if path.startswith(self._endpoint_root):
            await self.endpoints(scope, receive, send)
            return
        plan = self.routes.match(path)
        if plan is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        switches = self._switches
        key = self._replay_key(scope, query, plan, switches)
        # Where the response may be kept: the policy's own cache as the request began (a reload
        # meanwhile keeps nothing in the new one).
        keep = None if key is None else (self.responses, key)
        # HEAD must carry the headers GET would; only the rendered body can tell them.
        app_scope = {**scope, "method": "GET"} if scope["method"] == "HEAD" else scope
        if keep is not None:
            kept = keep[0].get(keep[1])
            if kept is not None:
                # Made for this path and query, under this policy and these switches: the checks
                # below passed for it then, and pass again.
                await self.app(app_scope, receive, self._sending_again(kept, keep, plan, switches, scope, send))
                return
        # `find`, not `in`: on bytes, `in` first tries its operand as an integer, at the price of an exception.
        standard = query.find(self._standard_marker) != -1 and self._standard(query)
        if standard or not switches.personalizes(plan.route.path):
            await self.app(scope, receive, send)
            return
        simulation = self._preview(scope) if query.find(self._preview_marker) != -1 else None
        fresh = PersonalizeResponder(self, plan, switches, simulation, scope, send, keep)
        await self.app(app_scope, receive, fresh.send_personalized)

    def _replay_key(self, scope: Scope, query: bytes, plan: RoutePlan, switches: Switches) -> ReplayKey | None:
        """The request values a response is made from (with the app's answer, compared as it comes),
        when the same inputs always make the same response: never with a preview token, valid or not."""
        if self.replay_hasher is None or plan.random or (query and query.find(self._preview_marker) != -1):
            return None
        client = scope.get("client") if self._keys_address else None
        inputs = key_inputs(
            self._keyed_headers,
            TRACE_HEADER,  # the owner's trace: checked, and answered, afresh
            scope["headers"],
            scope["path"],
            query,
            client[0] if client else "",
        )
        if inputs is None:
            return None
        # Keyed with a secret drawn at start-up, so the digests say nothing of the values they were made from.
        hasher = self.replay_hasher.copy()
        hasher.update(inputs)
        return hasher.digest(), switches.off

    def _sending_again(
        self, kept: Replay, keep: Keep, plan: RoutePlan, switches: Switches, scope: Scope, send: Send
    ) -> Send:
        """A `send` that sends the response kept for a request's inputs again when the app starts and
        ends its response as it did then; the moment it does not, the response is made afresh."""
        start: Message | None = None
        onward: Send | None = None  # where the app's messages go once the kept response is sent, or given up

        async def send_again(message: Message) -> None:
            nonlocal start, onward
            if onward is not None:
                await onward(message)
                return
            if start is None:
                if (
                    message["type"] == "http.response.start"
                    and message.get("status") == kept.status
                    and message.get("headers") == kept.app_headers
                ):
                    start = message
                    return
            elif (
                message["type"] == "http.response.body"
                and not message.get("more_body", False)
                and message.get("body", b"") == kept.source
                and (kept.until is None or self.consent.clock() < kept.until)
            ):
                onward = send  # whatever else the app sends, as it is
                counts = self.counts
                for shown in kept.shown:
                    counts[shown] += 1
                await send({**start, "headers": list(kept.headers)})  # the status was checked above
                await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else kept.body})
                return
            # The app answers otherwise now (or what was sent no longer holds): made afresh, and that
            # takes the kept one's place. Only a body sent in parts this time leaves the kept one be.
            if message["type"] != "http.response.body" or not message.get("more_body", False):
                keep[0].discard(keep[1])
            onward = PersonalizeResponder(self, plan, switches, None, scope, send, keep).send_personalized
            if start is not None:
                await onward(start)
            await onward(message)

        return send_again

    def set_switch(self, level: Level, name: str, on: bool) -> None:
        """Turn one switch on or off for every worker (see `SwitchStore.set`), and here from the next request."""
        self.switches.set(level, name, on)
        self._switches = self.switches.current()

    def _look_again(self, now: float) -> None:
        self._look_again_at = now + LOOK_AGAIN
        if self._policy is not None and self._policy.changed():
            self._reload(self._policy.path)
        self._switches = self.switches.current()

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def send_and_close(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                self.switches.close()  # the Redis store's listener thread and connections
            await send(message)

        return send_and_close

    def _reload(self, path: Path) -> None:
        fresh = object.__new__(PersonalizeMiddleware)
        fresh.app, fresh._options, fresh._policy = self.app, self._options, self._policy
        try:
            fresh._build(load_config(path))
        except Exception as exc:  # whatever is wrong with the new policy, the site keeps running on the old one
            logger.warning(
                "edge-personalize: %s changed but cannot be used, keeping the last good policy: %s", path, exc
            )
            return
        retired = self.switches
        self.__dict__.update(fresh.__dict__)  # one step: requests see the old policy or the new one
        retired.close()
        logger.info("edge-personalize: %s reloaded", path)

    def _preview(self, scope: Scope) -> Simulation | None:
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        token = next((value for key, value in query if key == PREVIEW_PARAM), "")
        return self.previews.read(token, scope["path"])

    def _standard(self, query: bytes) -> bool:
        # `?personalize=off` (or `=shared`, the link a visitor shares) is the page exactly as the app made it.
        values = {v for k, v in parse_qsl(query.decode("latin-1")) if k == self.standard_param}
        return bool(values & {"off", "shared"})


class PersonalizeResponder:
    """Per-response state: holds the start message until the first body chunk decides the headers."""

    # What a response may set as it goes, unset for most of them.
    trace = False
    initial_message: Message | None = None
    app_start: tuple[Any, list[tuple[bytes, bytes]]] | None = None  # the app's status and headers, to keep
    rewriter: SlotRewriter | None = None
    page: Page | None = None
    passthrough = False
    started = False
    shareable = False  # the app lets caches share the response
    shown: tuple[tuple[str, str], ...] | None = None  # what a page from the page cache showed
    now: datetime | None = None  # when the visitor's choice was read
    failed = False  # something went wrong and this visitor got (some of) the standard page
    ctx: VisitorContext | None = None

    def __init__(
        self,
        middleware: PersonalizeMiddleware,
        plan: RoutePlan,
        switches: Switches,
        simulation: Simulation | None,
        scope: Scope,
        send: Send,
        keep: Keep | None,
    ) -> None:
        self.middleware = middleware
        self.plan = plan
        self.switches = switches
        self.simulation = simulation
        self.scope = scope
        self.send = send
        self.keep = keep  # where the response is kept, if it may be sent again
        self.head = scope["method"] == "HEAD"

    async def send_personalized(self, message: Message) -> None:
        message_type = message["type"]
        if message_type == "http.response.start":
            # A copy, as the server would write the head now: the app may reuse (or change) its header list.
            app_headers = list(message.get("headers", ()))
            message = {**message, "headers": list(app_headers)}
            if self._inspect(message):
                self.initial_message = message
                self.app_start = message["status"], app_headers
            else:
                self.passthrough = True
                await self.send(message)
        elif message_type == "http.response.body" and self.passthrough:
            await self._send_body(message.get("body", b""), more_body=message.get("more_body", False))
        elif message_type == "http.response.body" and not self.started:
            self.started = True
            body = source = message.get("body", b"")
            more_body = message.get("more_body", False)
            assert self.initial_message is not None
            # Only what the app lets caches share may be kept in the page cache, or sent again.
            shareable = self.shareable and not more_body
            headers = MutableHeaders(raw=self.initial_message["headers"])
            started = time.perf_counter()
            try:
                self._prepare(headers)
            except Exception as exc:
                # The boundary of "never break a page": whatever failed, this visitor gets the standard page.
                logger.warning(
                    "edge-personalize: %s served standard (%s: %s)", self.scope["path"], type(exc).__name__, exc
                )
                self.rewriter = None
                self.failed = True
            rest = b""
            if self.rewriter is not None:
                if more_body:
                    # The first bytes go out before the rest of a large first chunk is tokenized.
                    body, rest = body[:FIRST_BYTES], body[FIRST_BYTES:]
                    body = self._rewrite(body, more_body=True)
                    del headers["content-length"]
                else:
                    body = self._rewrite_whole(body, cacheable=shareable and not self.trace)
                    headers["content-length"] = str(len(body))
            if self.trace and self.page is not None:
                # For previews and the owner only: which variant each slot got, from which signals.
                headers["x-personalize-trace"] = self.page.trace()
                elapsed = (time.perf_counter() - started) * 1000
                headers.append("server-timing", f'personalize;dur={elapsed:.2f};desc="edge-personalize"')
            if shareable and self.keep is not None:
                self._keep(self.keep, source, body)
            await self.send(self.initial_message)
            await self._send_body(body, more_body=more_body)
            if rest:
                await self._send_body(self._rewrite(rest, more_body=True) if self.rewriter else rest, more_body=True)
        elif message_type == "http.response.body":
            body = message.get("body", b"")
            more_body = message.get("more_body", False)
            if self.rewriter is not None:
                body = self._rewrite(body, more_body=more_body)
            await self._send_body(body, more_body=more_body)
        elif message_type == "http.response.pathsend":
            # A file sent by path cannot be rewritten: send it as the app described it.
            if self.initial_message is not None and not self.started:
                self.started = True
                await self.send(self.initial_message)
            if self.head:
                await self.send({"type": "http.response.body", "body": b""})
            else:
                await self.send(message)
        else:
            await self.send(message)

    def _keep(self, keep: Keep, source: bytes, body: bytes) -> None:
        page = self.page
        if self.failed or self.trace or (page is not None and page.fallbacks):
            return  # a response that fell back is made afresh next time
        ctx = self.ctx
        if ctx is not None and ctx.consent.state == "unknown" and _carries_a_choice(ctx):
            return  # a stored choice that could not be read (tampered, expired, or from a clock ahead)
        assert self.initial_message is not None and self.app_start is not None
        status, app_headers = self.app_start
        kept_app_headers, headers = byte_pairs(app_headers), byte_pairs(self.initial_message["headers"])
        if kept_app_headers is None or headers is None:
            return  # headers no server could send: the app's, made afresh each time
        until = settled_until(ctx.consent, self.now) if ctx is not None and self.now is not None else None
        shown = self.shown if self.shown is not None else page.shown() if page is not None else ()
        replay = Replay(status, list(kept_app_headers), source, headers, body, shown, until)
        held = len(body) + (len(source) if source is not body else 0)
        held += sum(len(n) + len(v) for n, v in headers + kept_app_headers)
        responses, key = keep
        responses.put(key, replay, held)

    def _rewrite_whole(self, body: bytes, *, cacheable: bool) -> bytes:
        """A body sent in one message, from the page cache when this page was rewritten before (if it
        may be kept there)."""
        page = self.page
        assert page is not None
        if not cacheable:
            return self._rewrite(body, more_body=False)
        pages = self.middleware.personalizer.pages
        key = page.cache_key(hashlib.sha256(body).digest())
        cached = pages.get(key)
        if cached is not None:
            page.replay(cached[1])
            self.shown = cached[1]
            return cached[0]
        rewritten = self._rewrite(body, more_body=False)
        if self.rewriter is not None and not page.fallbacks:  # never keep a page that fell back
            # The key holds the path and query: they count towards the bound too.
            pages.put(key, (rewritten, page.shown()), len(rewritten) + len(page.path) + len(page.query_string))
        return rewritten

    def _rewrite(self, body: bytes, *, more_body: bool) -> bytes:
        assert self.rewriter is not None
        try:
            return self.rewriter.feed(body) if more_body else self.rewriter.close(body)
        except Exception as exc:
            # Nothing of this chunk was sent yet: send what was held back and the chunk as they are.
            logger.warning(
                "edge-personalize: %s rewriting stopped (%s: %s)", self.scope["path"], type(exc).__name__, exc
            )
            held = self.rewriter.release()
            self.rewriter = None
            self.failed = True
            return held + body

    async def _send_body(self, body: bytes, *, more_body: bool) -> None:
        if self.head:
            if more_body:
                return
            body = b""
        await self.send({"type": "http.response.body", "body": body, "more_body": more_body})

    def _inspect(self, message: Message) -> bool:
        """Whether this response can be rewritten (a 200 HTML page in an ASCII-compatible charset, not
        encoded, not no-transform), noting whether the app lets caches share it."""
        if message["status"] != 200:
            return False
        content_type = b""
        cache_control: list[bytes] = []
        self.shareable = True
        for name, value in message.get("headers", ()):
            if not isinstance(value, (bytes, bytearray)):
                return False  # only bytes can be read here: the response goes out as the app gave it
            value = bytes(value)
            if name == b"content-type":
                content_type = content_type or value
            elif name == b"content-encoding":
                return False
            elif name == b"cache-control":
                cache_control.extend(item.strip().lower() for item in value.split(b","))
            elif name == b"set-cookie":
                self.shareable = False
        if b"no-transform" in cache_control:
            return False
        if b"private" in cache_control or b"no-store" in cache_control:
            self.shareable = False
        return rewritable_type(content_type)

    def _prepare(self, headers: MutableHeaders) -> None:
        """Make the headers true for every visitor context, and set up the rewriter if this visitor gets one."""
        plan = self.plan
        for name in plan.vary:
            add_vary_header(headers, name)
        if plan.private:
            make_private(headers)
        middleware = self.middleware
        if self.simulation is not None:
            # A signed preview: the chosen context, never the visitor's own, and never stored anywhere.
            ctx = self.simulation.context(middleware.readers)
            headers["cache-control"] = "private, no-store"
            self.trace = True
        else:
            self.now = middleware.consent.clock()  # before the choice is read: what it says holds from then
            consent = middleware.consent.read(self.scope) if middleware.consent_dependent else NO_CONSENT
            ctx = VisitorContext(middleware.readers, self.scope, consent)
            self.ctx = ctx
            # The owner asks for a trace on a live page with this request header and their credentials.
            asked = "x-personalize-trace" in ctx.headers
            self.trace = asked and middleware.owner.status(self.scope) == 200
        personalizer = middleware.personalizer
        reason = personalizer.standard_reason(plan, ctx)
        if reason in ("crawler", "shared-link"):
            return
        decisions = {} if reason == "consent" else personalizer.decide(plan.slots, ctx, self.switches)
        banner = middleware.show_banner and ctx.consent.state == "unknown"
        if not banner and not any(decision.variant or decision.reason == "holdout" for decision in decisions.values()):
            return
        media = headers.get("content-type", "").partition(";")[2]
        self.page = Page(
            personalizer=personalizer,
            ctx=ctx,
            path=self.scope["path"],
            query_string=self.scope.get("query_string", b"").decode("latin-1"),
            charset=charset_of(media),
            decisions=decisions,
            counts=middleware.counts,
        )
        self.rewriter = SlotRewriter(
            self.page.on_slot,
            max_slot_bytes=personalizer.config.limits.max_slot_bytes,
            before_body_end=self.page.banner() if banner else None,
        )
        etag = headers.get("etag")
        if etag is not None:
            # The body now differs per variant set: a weak validator that names the set.
            opaque = etag.removeprefix("W/").strip('"')
            headers["etag"] = f'W/"{opaque}-{self.page.variant_key()}"'


def _carries_a_choice(ctx: VisitorContext) -> bool:
    """Whether the request carries a stored choice, among the headers its context may read."""
    return any(COOKIE_NAME in value for value in ctx.headers.getlist("cookie"))


@functools.lru_cache(maxsize=64)
def rewritable_type(content_type: bytes) -> bool:
    """Whether a Content-Type is HTML in a charset where markup can be found in the raw bytes."""
    media_type, _, params = content_type.decode("latin-1").partition(";")
    return media_type.strip().lower() == "text/html" and charset_of(params) in ASCII_COMPATIBLE


def charset_of(params: str) -> str:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return "utf-8"


def add_vary_header(headers: MutableHeaders, name: str) -> None:
    """Merge `name` into Vary without repeating it (and never widen a `Vary: *`)."""
    present = {item.strip().lower() for value in headers.getlist("vary") for item in value.split(",")}
    if name.lower() not in present and "*" not in present:
        headers.add_vary_header(name)


def make_private(headers: MutableHeaders) -> None:
    """Forbid shared caches to store the response; keep the app's other directives."""
    kept = [
        item.strip()
        for item in headers.get("cache-control", "").split(",")
        if item.strip() and item.strip().lower().split("=")[0] not in ("public", "s-maxage", "private")
    ]
    headers["cache-control"] = ", ".join(["private", *kept])
