"""The built-in endpoints under `site.endpoint_prefix`: the visitor's choices, the why page
and the public policy.

Choices change only on POST, only from the site's own pages, and answer with a 303 back to a
path on this site; these responses are the only ones that ever set a cookie.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from edge_personalize.admin import admin
from edge_personalize.forms import read_form, safe_next, same_origin
from edge_personalize.i18n import country_choices
from edge_personalize.signals.language import language_name
from edge_personalize.why import explain_page, site_policy, visitor_context

if TYPE_CHECKING:
    from edge_personalize.middleware import PersonalizeMiddleware

CHOICES = ("accept", "reject", "withdraw")


class Endpoints:
    def __init__(self, middleware: PersonalizeMiddleware) -> None:
        self.middleware = middleware
        self.prefix = middleware.config.site.endpoint_prefix
        self.consent = middleware.consent
        # The policy is public and the same for everyone: built once.
        self.policy = site_policy(middleware.config, middleware)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path"][len(self.prefix) :]
        if name in ("/consent", "/correct"):
            response = await self.choice(scope, receive, name)
            response.headers["cache-control"] = "no-store"
        elif name == "/why" and scope["method"] in ("GET", "HEAD"):
            response = self.why(scope)
        elif name in ("/admin", "/admin/switch"):
            response = await admin(self.middleware, scope, receive, name)
        elif name == "/policy.json" and scope["method"] in ("GET", "HEAD"):
            headers = {"cache-control": "public, max-age=300", "x-content-type-options": "nosniff"}
            response = JSONResponse(self.policy, headers=headers)
        else:
            response = PlainTextResponse("Not Found", status_code=404)
        await response(scope, receive, send)

    def why(self, scope: Scope) -> Response:
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        path = safe_next(query.get("path"))
        ctx = visitor_context(self.middleware, scope, query.get("ref"))
        page = explain_page(self.middleware, ctx, urlsplit(path).path)
        headers = {"cache-control": "private, no-store", "vary": "Accept", "x-content-type-options": "nosniff"}
        if "application/json" in Headers(scope=scope).get("accept", ""):
            return JSONResponse(page, headers=headers)
        language = page["language"]
        values = {
            **page,
            "prefix": self.prefix,
            "privacy_url": self.middleware.config.badge.privacy_url,
            "back_url": path,
            "countries": country_choices(language),
            "languages": [(code, language_name(code, code)) for code in self.middleware.config.site.languages],
        }
        env = self.middleware.personalizer.environment(language)
        return HTMLResponse(env.get_template("why.html").render(values), headers=headers)

    async def choice(self, scope: Scope, receive: Receive, name: str) -> Response:
        if scope["method"] != "POST":
            # Consent never changes on GET: a link or an image cannot choose for the visitor.
            return PlainTextResponse("Method Not Allowed", status_code=405, headers={"allow": "POST"})
        headers = Headers(scope=scope)
        if not same_origin(headers):
            return PlainTextResponse("Forbidden: choices are made on this site's own pages", status_code=403)
        form = await read_form(receive)
        if form is None:
            return PlainTextResponse("Payload Too Large", status_code=413)
        previous = self.consent.read(scope)
        if name == "/consent":
            choice = form.get("choice", "")
            if choice not in CHOICES:
                return PlainTextResponse("Bad Request: choice is accept, reject or withdraw", status_code=400)
            chosen = self.consent.choose(previous, choice)
        else:
            language = form.get("language") or None
            country = (form.get("country") or "").upper() or None
            chosen = self.consent.correct(previous, language=language, country=country)
        response = Response(status_code=303, headers={"location": safe_next(form.get("next"))})
        for value in self.consent.cookie_header(chosen, secure=scope.get("scheme") == "https"):
            response.raw_headers.append((b"set-cookie", value.encode("latin-1")))
        return response
