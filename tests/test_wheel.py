"""The wheel, installed on its own in a fresh virtualenv, serves personalized pages with its packaged templates.

Builds the wheel from this checkout, installs it (runtime dependencies from the package index or pip's cache)
into a new venv, and runs a tiny Starlette app there with a clean environment, so nothing can be imported
from the source tree by accident.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SECRET = "wheel-test-secret-0123456789abcd"

PERSONALIZE_TOML = """\
[site]
languages = ["en", "de"]

[[routes]]
path = "/"
slots = ["hero"]
shared_links_standard = false

[[slots.hero.variants]]
name = "german-speakers"
when = { language = "de" }
html = "<h1>Willkommen</h1>"
purpose = "support"
"""

SERVE_SCRIPT = """\
import asyncio
import importlib.util
import json
import sys

import edge_personalize
from edge_personalize import PersonalizeMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse
from starlette.routing import Route

PAGE = '<!doctype html><html><body><section data-personalize="hero"><h1>Welcome</h1></section></body></html>'


async def home(request):
    return HTMLResponse(PAGE)


app = Starlette(
    routes=[Route("/", home)],
    middleware=[Middleware(PersonalizeMiddleware, config=sys.argv[1])],
)


async def get(path, headers):
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body.decode()


status, body = asyncio.run(get("/", [("host", "testserver"), ("accept-language", "de-DE,de;q=0.9")]))
print(json.dumps({"file": edge_personalize.__file__, "sys_path": sys.path, "status": status, "body": body}))
"""


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def _clean_env() -> dict[str, str]:
    # Nothing that could point Python at the checkout or at the venv running the tests.
    dropped = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python of a fresh venv with the wheel installed, the installed package folder)."""
    dist = tmp_path_factory.mktemp("dist")
    build: list[str | Path] = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, REPO]
    if importlib.util.find_spec("hatchling") is not None:
        build.append("--no-build-isolation")  # the backend is already here: no download, much faster
    _run(build, cwd=dist, env=_clean_env())
    wheels = list(dist.glob("edge_personalize-*.whl"))
    assert len(wheels) == 1, wheels

    venv = tmp_path_factory.mktemp("venv")
    # Without pip the venv is made in milliseconds; this interpreter's pip installs into it with --python.
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)], capture_output=True, text=True
    )
    python = _venv_python(venv)
    if made.returncode != 0 or not python.exists():
        pytest.skip(f"cannot create a virtualenv here: {made.stderr.strip() or 'no interpreter in it'}")

    install: list[str | Path] = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", wheels[0]]
    _run(install, cwd=venv, env=_clean_env())
    where = _run(
        [python, "-I", "-c", "import edge_personalize, pathlib; print(pathlib.Path(edge_personalize.__file__).parent)"],
        env=_clean_env(),
        cwd=venv,
    )
    return python, Path(where.stdout.strip())


def _files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_wheel_ships_templates_and_catalogs(installed: tuple[Path, Path]) -> None:
    python, package = installed
    assert package.is_relative_to(python.parent.parent), package
    assert (package / "templates" / "badge.html").is_file()
    assert _files_under(REPO / "templates") <= _files_under(package / "templates")
    locale = REPO / "edge_personalize" / "locale"
    if locale.is_dir():
        assert _files_under(locale) <= _files_under(package / "locale")


def test_installed_wheel_serves_personalized_page_with_badge(
    installed: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    python, package = installed
    site = tmp_path_factory.mktemp("site")
    (site / "personalize.toml").write_text(PERSONALIZE_TOML, encoding="utf-8")
    (site / "serve.py").write_text(textwrap.dedent(SERVE_SCRIPT), encoding="utf-8")

    env = {"PATH": os.environ.get("PATH", ""), "EDGE_PERSONALIZE_SECRET": SECRET}
    if sys.platform == "win32":
        env["SYSTEMROOT"] = os.environ.get("SYSTEMROOT", "")
    result = _run([python, "-I", "serve.py", "personalize.toml"], cwd=site, env=env)
    served = json.loads(result.stdout)

    assert Path(served["file"]).parent == package
    assert not any(Path(p or ".").resolve().is_relative_to(REPO) for p in served["sys_path"])
    assert served["status"] == 200
    assert "Willkommen" in served["body"]
    assert "<h1>Welcome</h1>" not in served["body"]
    assert "data-personalize-badge" in served["body"]
