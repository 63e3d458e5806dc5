"""The site owner's page: switches, counts and the simulator, behind owner authentication.

The page does not exist (404) unless the site configures owner authentication: a hashed token
in the environment (`owner.token_hash_env`, checked with HTTP Basic auth, no cookie) or a
callable that receives the request. Switch changes are POSTs with a signed CSRF token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope

from edge_personalize.config import Config
from edge_personalize.explain import describe
from edge_personalize.forms import read_form, same_origin
from edge_personalize.preview import Simulation
from edge_personalize.rules import DEVICE_CLASSES, REFERRER_CATEGORIES
from edge_personalize.switches import LEVELS, SwitchStoreError
from edge_personalize.why import simulate

if TYPE_CHECKING:
    from edge_personalize.middleware import PersonalizeMiddleware

OwnerAuth = Callable[[Request], bool]
CSRF_SECONDS = 2 * 3600


class Owner:
    """Who may see the owner page and the decision trace."""

    def __init__(self, config: Config, signing_keys: list[str], auth: OwnerAuth | None) -> None:
        self.auth = auth
        raw = os.environ.get(config.owner.token_hash_env, "").strip().lower().removeprefix("sha256:")
        self.token_hash = raw if len(raw) == 64 and all(c in "0123456789abcdef" for c in raw) else None
        self.configured = auth is not None or self.token_hash is not None
        self._csrf = URLSafeTimedSerializer(list(reversed(signing_keys)), salt="edge-personalize.owner-csrf")

    def status(self, scope: Scope) -> int:
        """200 for the owner, 401 without credentials, 403 with wrong ones, 404 when not configured."""
        if not self.configured:
            return 404
        if self.auth is not None:
            return 200 if self.auth(Request(scope)) else 403
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            return 401
        try:
            token = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return 403
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert self.token_hash is not None
        return 200 if hmac.compare_digest(digest, self.token_hash) else 403

    def csrf_token(self) -> str:
        return self._csrf.dumps("switch")

    def csrf_valid(self, token: str) -> bool:
        try:
            return bool(self._csrf.loads(token, max_age=CSRF_SECONDS) == "switch")
        except BadSignature:
            return False


async def admin(middleware: PersonalizeMiddleware, scope: Scope, receive: Receive, name: str) -> Response:
    owner = middleware.owner
    status = owner.status(scope)
    if status == 404:
        return PlainTextResponse("Not Found", status_code=404)
    if status == 401:
        return PlainTextResponse(
            "Unauthorized", status_code=401, headers={"www-authenticate": 'Basic realm="edge-personalize owner"'}
        )
    if status == 403:
        return PlainTextResponse("Forbidden", status_code=403)
    prefix = middleware.config.site.endpoint_prefix
    if name == "/admin/switch":
        if scope["method"] != "POST":
            return PlainTextResponse("Method Not Allowed", status_code=405, headers={"allow": "POST"})
        form = await read_form(receive)
        if form is None or not same_origin(Headers(scope=scope)) or not owner.csrf_valid(form.get("csrf", "")):
            return PlainTextResponse("Forbidden: stale or cross-site form; reload the owner page", status_code=403)
        level = form.get("level", "")
        if level not in LEVELS:
            return PlainTextResponse("Bad Request: unknown level", status_code=400)
        try:
            middleware.set_switch(level, form.get("name", ""), form.get("on") == "1")
        except (SwitchStoreError, ValueError) as exc:
            return PlainTextResponse(f"Switch not changed: {exc}", status_code=503)
        return Response(status_code=303, headers={"location": f"{prefix}/admin"})
    if scope["method"] not in ("GET", "HEAD"):
        return PlainTextResponse("Method Not Allowed", status_code=405, headers={"allow": "GET"})
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    values = page_values(middleware, query)
    env = middleware.personalizer.environment("en")
    return HTMLResponse(env.get_template("admin.html").render(values), headers={"cache-control": "no-store"})


def page_values(middleware: PersonalizeMiddleware, query: dict[str, str]) -> dict[str, Any]:
    config = middleware.config
    switches = middleware.switches.current()
    counts = middleware.counts
    slots = []
    for name, slot in config.slots.items():
        slots.append(
            {
                "name": name,
                "on": switches.allows("slot", name),
                "enabled": slot.enabled,
                "holdout": slot.holdout,
                "held_out": counts.get((name, "(holdout)"), 0),
                "variants": [
                    {
                        "name": variant.name,
                        "id": f"{name}/{variant.name}",
                        "on": switches.allows("variant", f"{name}/{variant.name}"),
                        "enabled": variant.enabled,
                        "purpose": variant.purpose,
                        "when": describe(variant.when.to_data(), "en"),  # type: ignore[union-attr]
                        "shown": counts.get((name, variant.name), 0),
                    }
                    for variant in slot.variants
                ],
            }
        )
    simulated = None
    if "path" in query:
        path = query["path"] if query["path"].startswith("/") else "/"
        simulation = Simulation.from_values(query)
        simulated = {
            "path": path,
            "slots": simulate(middleware, path, simulation),
            "preview_link": middleware.previews.link(path, simulation),
        }
    return {
        "prefix": config.site.endpoint_prefix,
        "csrf": middleware.owner.csrf_token(),
        "site_on": switches.allows("site", "*"),
        "routes": [
            {
                "path": route.path,
                "enabled": route.enabled,
                "on": switches.allows("route", route.path),
                "slots": route.slots,
            }
            for route in config.routes
        ],
        "slots": slots,
        "query": query,
        "languages": config.site.languages,
        "referrers": REFERRER_CATEGORIES,
        "devices": DEVICE_CLASSES,
        "simulated": simulated,
    }
