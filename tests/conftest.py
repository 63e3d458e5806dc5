from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from edge_personalize import Config, LocationSettings, Route, SiteSettings, Slot, Variant

SECRET = "test-secret-0123456789abcdefghij"
DATA = Path(__file__).parent / "data"
PAGE = (
    '<!doctype html><html><body><p>intro</p><section data-personalize="hero"><h1>Welcome</h1></section></body></html>'
)


def make_config(**overrides: Any) -> Config:
    """A small policy: a German hero on "/", chosen by language only."""
    config = Config(
        site=SiteSettings(languages=("en", "de", "fr")),
        routes=(Route("/", slots=("hero",), shared_links_standard=False),),
        slots={
            "hero": Slot(
                variants=(
                    Variant(
                        name="german-speakers", when={"language": "de"}, html="<h1>Willkommen</h1>", purpose="support"
                    ),
                )
            )
        },
        location=LocationSettings(source="none"),
        secret_keys=(SECRET,),
    )
    return replace(config, **overrides) if overrides else config


@pytest.fixture
def config_factory() -> Callable[..., Config]:
    return make_config


@pytest.fixture(autouse=True)
def _no_global_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_PERSONALIZE_DISABLED", raising=False)
    if "EDGE_PERSONALIZE_SECRET" in os.environ:
        monkeypatch.delenv("EDGE_PERSONALIZE_SECRET")


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The example shop as it ships, with a test secret."""
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", SECRET)
    from examples.shop.app import app

    with TestClient(app, follow_redirects=False) as client:
        yield client
