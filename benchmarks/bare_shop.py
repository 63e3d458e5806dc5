"""The demo shop without the middleware: the same routes and templates, for `uvicorn benchmarks.bare_shop:app`."""

from __future__ import annotations

from starlette.applications import Starlette

from examples.shop.app import app as shop

app = Starlette(routes=shop.routes)
