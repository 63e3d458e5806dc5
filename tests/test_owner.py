from __future__ import annotations

import base64
import hashlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient

from edge_personalize import Config, OwnerSettings, PersonalizeMiddleware, Route, Slot, Variant
from edge_personalize.cli import DEMO_OWNER_TOKEN_HASH, main
from edge_personalize.preview import PREVIEW_PARAM, Simulation
from tests.conftest import SECRET, make_config

TOKEN = "owner-token-0123456789"
TOKEN_HASH = "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()
GERMAN = {"accept-language": "de"}
ADMIN = "/_personalize/admin"
TWO_SLOTS = """
<!doctype html><html><body>
<section data-personalize="hero"><h1>Welcome</h1></section>
<aside data-personalize="note"><p>Standard note</p></aside>
</body></html>"""
SLOTS = {
    "hero": Slot(
        variants=(Variant(name="german", when={"language": "de"}, html="<h1>Willkommen</h1>", purpose="support"),)
    ),
    "note": Slot(
        variants=(
            Variant(name="search", when={"referrer": "search"}, html="<p>Found us?</p>", purpose="support"),
            Variant(name="german-note", when={"language": "de"}, html="<p>Hallo</p>", purpose="support"),
        )
    ),
}


def basic(token: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"owner:{token}".encode()).decode()}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    routes = (Route("/", slots=("hero", "note"), shared_links_standard=False), Route("/other", slots=("hero",)))
    return make_config(slots=SLOTS, routes=routes, base_dir=tmp_path, owner=OwnerSettings(switches="switches.toml"))


def client_for(config: Config, **kwargs: Any) -> TestClient:
    async def page(request: Request) -> Response:
        return HTMLResponse(TWO_SLOTS)

    app = Starlette(
        routes=[StarletteRoute("/", page), StarletteRoute("/other", page)],
        middleware=[Middleware(PersonalizeMiddleware, config=config, **kwargs)],
    )
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def owner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_PERSONALIZE_OWNER_TOKEN_HASH", TOKEN_HASH)


def switch_file(config: Config, text: str) -> None:
    path = config.resolve("switches.toml")
    path.write_text(text)
    stamp = time.time() + 5  # a new mtime, however fast the test runs
    import os

    os.utime(path, (stamp, stamp))


@pytest.mark.parametrize(
    ("switches", "hero", "note"),
    [
        ("site = false\n", False, False),
        ('[routes]\n"/" = false\n', False, False),
        ("[slots]\nhero = false\n", False, True),
        ('[variants]\n"note/german-note" = false\n', True, False),
        ('[variants]\n"hero/german" = true\n', True, True),
    ],
    ids=["site", "route", "slot", "variant", "on"],
)
def test_a_switch_off_means_default_content_at_each_level(
    config: Config, switches: str, hero: bool, note: bool
) -> None:
    client = client_for(config)
    assert "Willkommen" in client.get("/", headers=GERMAN).text
    switch_file(config, switches)
    time.sleep(0.6)  # the file is re-checked at most twice a second
    text = client.get("/", headers=GERMAN).text
    assert ("Willkommen" in text) == hero
    assert ("Hallo" in text) == note
    if not hero and not note:
        assert text == TWO_SLOTS


def test_owner_page_is_absent_without_owner_authentication(config: Config) -> None:
    assert client_for(config).get(ADMIN).status_code == 404


def test_owner_page_asks_for_credentials_and_refuses_wrong_ones(config: Config, owner: None) -> None:
    client = client_for(config)
    missing = client.get(ADMIN)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Basic realm="edge-personalize owner"'
    assert client.get(ADMIN, headers=basic("wrong")).status_code == 403
    assert client.get(ADMIN, headers={"authorization": "Basic !!!"}).status_code == 403
    page = client.get(ADMIN, headers=basic(TOKEN))
    assert page.status_code == 200
    assert "german-note" in page.text and "Simulator" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "set-cookie" not in page.headers


def test_owner_page_with_the_sites_own_authentication(config: Config) -> None:
    client = client_for(config, owner_auth=lambda request: request.headers.get("x-staff") == "yes")
    assert client.get(ADMIN).status_code == 403
    assert client.get(ADMIN, headers={"x-staff": "yes"}).status_code == 200


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_switch_changes_need_the_owner_a_csrf_token_and_a_same_origin_post(config: Config, owner: None) -> None:
    client = client_for(config)
    csrf = csrf_of(client.get(ADMIN, headers=basic(TOKEN)).text)
    form = {"level": "slot", "name": "hero", "on": "0", "csrf": csrf}
    assert client.post(f"{ADMIN}/switch", data=form).status_code == 401
    assert client.post(f"{ADMIN}/switch", data={**form, "csrf": "forged"}, headers=basic(TOKEN)).status_code == 403
    cross = {**basic(TOKEN), "sec-fetch-site": "cross-site"}
    assert client.post(f"{ADMIN}/switch", data=form, headers=cross).status_code == 403
    assert client.get(f"{ADMIN}/switch?level=slot&name=hero&on=0", headers=basic(TOKEN)).status_code == 405
    assert "Willkommen" in client.get("/", headers=GERMAN).text
    done = client.post(f"{ADMIN}/switch", data=form, headers=basic(TOKEN))
    assert done.status_code == 303 and done.headers["location"] == ADMIN
    assert "Willkommen" not in client.get("/", headers=GERMAN).text
    assert "hero = false" in config.resolve("switches.toml").read_text()


def test_counts_show_variants_shown_and_views_held_out(config: Config, owner: None) -> None:
    held = {**SLOTS, "hero": Slot(variants=SLOTS["hero"].variants, holdout=0.5)}
    client = client_for(make_config(**{**config.__dict__, "slots": held}))
    seen = [("Willkommen" in client.get("/", headers=GERMAN).text) for _ in range(60)]
    page = client.get(ADMIN, headers=basic(TOKEN)).text
    shown = seen.count(True)
    assert 0 < shown < 60  # both groups exist
    assert f"({60 - shown} held out so far)" in page
    assert re.search(rf"<td>german</td><td>language: German</td><td>support</td><td>{shown}</td>", page)


def test_simulator_shows_what_each_slot_gives_a_context(config: Config, owner: None) -> None:
    client = client_for(config)
    page = client.get(f"{ADMIN}?path=/&language=de&referrer=search&device=mobile", headers=basic(TOKEN)).text
    assert "<tr><td>hero</td><td>german</td>" in page
    assert (
        "<tr><td>note</td><td>search</td><td>Sie kommen von einer Suchmaschine.</td></tr>" in page
    )  # as they would read it
    assert f"/?{PREVIEW_PARAM}=" in page


def preview_link(config: Config, path: str, **values: Any) -> str:
    middleware = PersonalizeMiddleware(lambda scope, receive, send: None, config=config)  # type: ignore[arg-type,return-value]
    return middleware.previews.link(path, Simulation.from_values(values))


def test_a_signed_preview_shows_the_chosen_context_with_a_trace_and_no_cookie(config: Config) -> None:
    client = client_for(config)
    link = preview_link(config, "/", language="de", referrer="search")
    response = client.get(link, headers={"accept-language": "fr", "referer": "https://t.co/x"})
    assert "Willkommen" in response.text and "Found us?" in response.text
    assert "data-personalize-badge" in response.text
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["x-personalize-trace"] == (
        'hero=german;signals="language";fallback=0, note=search;signals="referrer";fallback=0'
    )
    assert response.headers["server-timing"].startswith("personalize;dur=")
    assert "set-cookie" not in response.headers


def test_previews_are_bound_to_their_path_and_cannot_be_tampered_with(config: Config) -> None:
    client = client_for(config)
    link = preview_link(config, "/", language="de")
    elsewhere = client.get("/other" + link[1:], headers={"accept-language": "fr"})
    assert "x-personalize-trace" not in elsewhere.headers and "Willkommen" not in elsewhere.text
    tampered = client.get(link[:-3] + "abc", headers={"accept-language": "fr"})
    assert "x-personalize-trace" not in tampered.headers and "Willkommen" not in tampered.text
    other_key = make_config(**{**config.__dict__, "secret_keys": ("another-secret-0123456789",)})
    foreign = client.get(preview_link(other_key, "/", language="de"), headers={"accept-language": "fr"})
    assert "Willkommen" not in foreign.text


def test_previews_expire(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    past = time.time() - 3601
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: past)
    link = preview_link(config, "/", language="de")
    monkeypatch.undo()
    response = client_for(config).get(link, headers={"accept-language": "fr"})
    assert "Willkommen" not in response.text and "x-personalize-trace" not in response.headers


def test_trace_is_never_sent_to_ordinary_visitors_only_to_the_owner(config: Config, owner: None) -> None:
    client = client_for(config)
    visitor = client.get("/", headers={**GERMAN, "x-personalize-trace": "1"})
    assert "x-personalize-trace" not in visitor.headers and "server-timing" not in visitor.headers
    wrong = client.get("/", headers={**GERMAN, "x-personalize-trace": "1", **basic("nope")})
    assert "x-personalize-trace" not in wrong.headers
    owners = client.get("/", headers={**GERMAN, "x-personalize-trace": "1", **basic(TOKEN)})
    assert owners.headers["x-personalize-trace"].startswith('hero=german;signals="language";fallback=0')


def test_trace_reports_a_fallback(tmp_path: Path) -> None:
    (tmp_path / "broken.html").write_text("{{ visitor.language + 1 }}")
    slots = {
        "hero": Slot(variants=(Variant(name="b", when={"language": "de"}, template="broken.html", purpose="support"),))
    }
    config = make_config(
        slots=slots, base_dir=tmp_path, site=make_config().site.__class__(languages=("en", "de"), templates_dir=".")
    )
    link = preview_link(config, "/", language="de")
    response = client_for(config).get(link)
    assert response.headers["x-personalize-trace"] == 'hero=b;signals="language";fallback=1'


# The command line.


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "personalize.toml"
    path.write_text(
        """
[site]
languages = ["en", "de"]

[[routes]]
path = "/"
slots = ["hero"]

[slots.hero]
[[slots.hero.variants]]
name = "not-us"
when = { not = { country = "US" } }
html = "<h1>Hello</h1>"
purpose = "support"

[[slots.hero.variants]]
name = "austria"
when = { country = "AT" }
html = "<h1>Servus</h1>"
purpose = "support"

[slots.orphan]
[[slots.orphan.variants]]
name = "x"
when = { language = "de" }
html = "x"
purpose = "support"
"""
    )
    return path


def test_check_reports_unreachable_variants_and_orphan_slots(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(policy)]) == 1
    out = capsys.readouterr().out
    assert "slots.hero.variants[1] (austria): can never win, because variants[0] (not-us) always matches first" in out
    assert "slots.orphan: configured on no route" in out


def test_check_passes_a_sound_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Path(__file__).parent.parent / "examples" / "shop" / "personalize.toml"
    assert main(["check", str(shop)]) == 0
    assert "ok (" in capsys.readouterr().out


def test_check_exit_codes_for_invalid_policies_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[site]\nlanguages = []\n[[routes]]\npath = '/'\n[slots.a]\n[[slots.a.variants]]\nname = 'x'\n"
                   "when = { language = 'en' }\nhtml = 'x'\npurpose = 'support'\n")  # fmt: skip
    assert main(["check", str(bad)]) == 1
    assert "bad.toml: site.languages: list at least one language" in capsys.readouterr().err
    assert main(["check"]) == 2
    assert main(["frobnicate"]) == 2


def test_explain_prints_the_decision_and_the_badge_text(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(policy), "/", "--country", "AT", "--language", "de"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "hero: not-us"
    assert "Österreich" in out


def test_preview_link_needs_the_secret_and_signs_a_link(
    policy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["preview-link", str(policy), "/", "--country", "AT"]) == 1
    assert "EDGE_PERSONALIZE_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", SECRET)
    assert main(["preview-link", str(policy), "/", "--country", "AT"]) == 0
    assert capsys.readouterr().out.startswith(f"/?{PREVIEW_PARAM}=")


def test_switch_command_writes_the_switch_store(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["switch", str(policy), "variant", "hero/austria", "off"]) == 0
    assert '"hero/austria" = false' in (policy.parent / "switches.toml").read_text()
    assert main(["switch", str(policy), "planet", "x", "off"]) == 2


def test_environment_switch_turns_the_site_off(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_PERSONALIZE_DISABLED", "1")
    assert client_for(config).get("/", headers=GERMAN).text == TWO_SLOTS


def test_variant_switch_shows_in_the_policy_and_why_page(config: Config) -> None:
    switch_file(config, '[variants]\n"hero/german" = false\n')
    page = client_for(config).get("/_personalize/why?path=/", headers={**GERMAN, "accept": "application/json"}).json()
    hero = page["slots"][0]
    assert hero["variant"] is None
    assert hero["alternatives"][0]["status"] == "switched-off"


@pytest.mark.parametrize("secret", [None, "", "  "])
def test_the_demo_makes_its_own_secret_when_none_is_set(
    secret: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if secret is None:
        monkeypatch.delenv("EDGE_PERSONALIZE_SECRET", raising=False)
    else:
        monkeypatch.setenv("EDGE_PERSONALIZE_SECRET", secret)  # an empty secret would fail every request
    monkeypatch.setenv("EDGE_PERSONALIZE_OWNER_TOKEN_HASH", DEMO_OWNER_TOKEN_HASH)
    monkeypatch.setattr(sys, "path", list(sys.path))
    served: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(app))
    assert main(["demo"]) == 0
    assert served == ["examples.shop.app:app"]
    assert len(os.environ["EDGE_PERSONALIZE_SECRET"]) >= 32
    assert "ep_preview=" in capsys.readouterr().out
