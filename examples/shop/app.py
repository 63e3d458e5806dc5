"""A small shop that personalizes a few fragments of its pages with edge-personalize.

Run it with `edge-personalize demo`, or `uvicorn examples.shop.app:app` with
EDGE_PERSONALIZE_SECRET set.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from edge_personalize import PersonalizeMiddleware

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

PRODUCTS = {
    "1": {"name": "Alpine rain jacket", "price": "129.00"},
    "2": {"name": "Trail running shoes", "price": "89.00"},
    "3": {"name": "Merino wool socks", "price": "19.00"},
}
ARTICLES = {"returns": "How returns work", "sizes": "Finding your size"}


async def home(request: Request) -> Response:
    return templates.TemplateResponse(request, "home.html", {"products": PRODUCTS})


async def products(request: Request) -> Response:
    return templates.TemplateResponse(request, "products.html", {"products": PRODUCTS})


async def product(request: Request) -> Response:
    item = PRODUCTS.get(request.path_params["id"])
    if item is None:
        return templates.TemplateResponse(request, "not_found.html", status_code=404)
    return templates.TemplateResponse(request, "product.html", {"product": item})


async def help_article(request: Request) -> Response:
    title = ARTICLES.get(request.path_params["slug"])
    if title is None:
        return templates.TemplateResponse(request, "not_found.html", status_code=404)
    return templates.TemplateResponse(request, "help.html", {"title": title})


async def privacy(request: Request) -> Response:
    return templates.TemplateResponse(request, "privacy.html")


app = Starlette(
    routes=[
        Route("/", home),
        Route("/products", products),
        Route("/products/{id}", product),
        Route("/help/{slug}", help_article),
        Route("/privacy", privacy),
    ]
)
app.add_middleware(PersonalizeMiddleware, config=HERE / "personalize.toml")
