"""Documentation site on FastAPI whose personalization policy is built in Python, not TOML.

Run it with `EDGE_PERSONALIZE_SECRET=... uvicorn examples.fastapi_docs.app:app`.
"""

from __future__ import annotations

from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from edge_personalize import (
    Config,
    LocationSettings,
    PersonalizeMiddleware,
    Route,
    SiteSettings,
    Slot,
    Variant,
)
from edge_personalize.rules import AnyOf, Language, Referrer

GUIDES = {"install": "Installing", "configure": "Configuring", "deploy": "Deploying"}

config = Config(
    site=SiteSettings(languages=("en", "de", "fr")),
    location=LocationSettings(source="none"),  # a docs site needs no location
    routes=(
        Route("/", slots=("intro",)),
        Route("/guides/{name}", slots=("tip",), shared_links_standard=False),
        Route("/reference/{rest:path}", enabled=False),  # the reference is the same for everyone
    ),
    slots={
        "intro": Slot(
            variants=(
                Variant(
                    name="from-search",
                    when=Referrer(("search",)),
                    html="<p>Landed here from a search? Start with <a href='/guides/install'>Installing</a>.</p>",
                    purpose="support",
                ),
            )
        ),
        "tip": Slot(
            variants=(
                Variant(
                    name="translated-docs",
                    when=AnyOf((Language(("de",)), Language(("fr",)))),
                    html="<p>These guides are also being translated: see the language menu.</p>",
                    purpose="support",
                ),
                Variant(
                    name="small-screen",
                    when={"device": "mobile"},  # a condition may also be given in its TOML form
                    html="<p>Tip: the code samples scroll sideways on small screens.</p>",
                    purpose="support",
                ),
            )
        ),
    },
)

app = FastAPI(title="Example docs")
app.add_middleware(PersonalizeMiddleware, config=config)


def page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )


@app.get("/", response_class=HTMLResponse)
async def home() -> HTMLResponse:
    links = "".join(f"<li><a href='/guides/{key}'>{escape(title)}</a></li>" for key, title in GUIDES.items())
    return page("Docs", f"<div data-personalize='intro'><p>Welcome to the docs.</p></div><ul>{links}</ul>")


@app.get("/guides/{name}", response_class=HTMLResponse)
async def guide(name: str) -> HTMLResponse:
    title = GUIDES.get(name, "Not found")
    return page(title, "<aside data-personalize='tip'><p>Questions? Ask in the forum.</p></aside><p>...</p>")


@app.get("/reference/{rest:path}", response_class=HTMLResponse)
async def reference(rest: str) -> HTMLResponse:
    return page("Reference", f"<p>{escape(rest)}</p><div data-personalize='tip'><p>Same for everyone.</p></div>")
