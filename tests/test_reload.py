from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from edge_personalize import PersonalizeMiddleware
from tests.conftest import PAGE, SECRET

POLICY = """
[site]
languages = ["en", "de"]

[location]
source = "none"

[[routes]]
path = "/"
slots = ["hero"]
shared_links_standard = false

[slots.hero]
[[slots.hero.variants]]
name = "german"
when = {{ language = "de" }}
html = "<h1>{greeting}</h1>"
purpose = "support"
"""


def write(path: Path, text: str) -> None:
    path.write_text(text)
    stamp = time.time() + 2  # a new modification time, however fast the test runs
    os.utime(path, (stamp, stamp))
    time.sleep(1.05)  # the file is re-checked at most once a second


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, TestClient]:
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", SECRET)
    policy = tmp_path / "personalize.toml"
    policy.write_text(POLICY.format(greeting="Willkommen"))

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(PersonalizeMiddleware, config=policy)
    return policy, TestClient(app)


def test_an_edited_policy_applies_without_a_restart(site: tuple[Path, TestClient]) -> None:
    policy, client = site
    assert "<h1>Willkommen</h1>" in client.get("/", headers={"accept-language": "de"}).text
    write(policy, POLICY.format(greeting="Servus"))
    assert "<h1>Servus</h1>" in client.get("/", headers={"accept-language": "de"}).text


def test_an_invalid_edit_keeps_the_last_good_policy_and_says_why_once(
    site: tuple[Path, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    policy, client = site
    client.get("/")
    write(policy, POLICY.format(greeting="Servus").replace("language =", "langauge ="))
    with caplog.at_level(logging.WARNING, logger="edge_personalize"):
        for _ in range(3):
            response = client.get("/", headers={"accept-language": "de"})
            assert response.status_code == 200
            assert "<h1>Willkommen</h1>" in response.text
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "changed but cannot be used, keeping the last good policy" in warning
    assert "unknown signal 'langauge' (did you mean 'language'?)" in warning
    write(policy, POLICY.format(greeting="Servus"))
    assert "<h1>Servus</h1>" in client.get("/", headers={"accept-language": "de"}).text


def test_a_deleted_policy_file_keeps_the_last_good_policy(site: tuple[Path, TestClient]) -> None:
    policy, client = site
    client.get("/")
    policy.unlink()
    time.sleep(1.05)
    assert "<h1>Willkommen</h1>" in client.get("/", headers={"accept-language": "de"}).text
