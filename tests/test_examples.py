from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.conftest import SECRET

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)


@pytest.fixture
def docs(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", SECRET)
    from examples.fastapi_docs.app import app

    with TestClient(app) as client:
        yield client


def test_fastapi_docs_personalize_from_a_config_built_in_python(docs: TestClient) -> None:
    german = docs.get("/guides/install", headers={"accept-language": "de"}).text
    assert "also being translated" in german and "data-personalize-badge" in german
    phone = docs.get("/guides/install", headers={"user-agent": IPHONE}).text
    assert "scroll sideways" in phone
    search = docs.get("/", headers={"referer": "https://duckduckgo.com/"}).text
    assert "Landed here from a search?" in search


def test_fastapi_docs_reference_keeps_the_shared_experience(docs: TestClient) -> None:
    response = docs.get("/reference/api", headers={"accept-language": "de", "user-agent": IPHONE})
    assert "Same for everyone." in response.text
    assert "data-personalize-badge" not in response.text
    assert "vary" not in response.headers


def test_shop_demo_pages_all_render(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", SECRET)
    from examples.shop.app import app

    with TestClient(app) as client:
        for path in ("/", "/products", "/products/1", "/help/returns", "/privacy"):
            assert client.get(path, headers={"accept-language": "fr"}).status_code == 200
        assert client.get("/products/nope").status_code == 404
