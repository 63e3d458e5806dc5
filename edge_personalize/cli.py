"""The `edge-personalize` command: check a policy, or run the demo shop."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_personalize.config import load_config
from edge_personalize.errors import ConfigError

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-personalize", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a personalize.toml")
    check.add_argument("config", type=Path)
    demo = commands.add_parser("demo", help="run the example shop on http://127.0.0.1:8000")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    if args.command == "check":
        return check_command(args.config)
    return demo_command(args.host, args.port)


def check_command(path: Path) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    variants = sum(len(slot.variants) for slot in config.slots.values())
    print(f"{path}: ok ({len(config.routes)} routes, {len(config.slots)} slots, {variants} variants)")
    return EXIT_OK


def find_shop() -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        shop = base / "examples" / "shop"
        if (shop / "app.py").is_file():
            return shop
    return None


def demo_command(host: str, port: int) -> int:
    try:
        import uvicorn
    except ImportError:
        print("error: the demo needs uvicorn: pip install 'edge-personalize[demo]'", file=sys.stderr)
        return EXIT_PROBLEMS
    shop = find_shop()
    if shop is None:
        print("error: examples/shop not found; run the demo from a checkout of the repository", file=sys.stderr)
        return EXIT_PROBLEMS
    # A fresh development secret each run: consent cookies from earlier runs simply stop counting.
    os.environ.setdefault("EDGE_PERSONALIZE_SECRET", secrets.token_urlsafe(32))
    sys.path.insert(0, str(shop.parent.parent))
    url = f"http://{host}:{port}"
    print(
        f"""The demo shop runs on {url}/ (Ctrl+C stops it). Try:

  curl -s {url}/ -H 'Accept-Language: de-AT,de;q=0.9' | grep -A2 'data-personalize="hero"'
  curl -s {url}/ -H 'CF-IPCountry: AT'                 | grep -A2 'data-personalize="shipping"'
  curl -s {url}/ -H 'Referer: https://www.google.com/' | grep -A2 'data-personalize="welcome"'
  curl -s '{url}/?utm_source=news&utm_campaign=spring' | grep -A2 'data-personalize="welcome"'
  curl -s '{url}/?personalize=off' -H 'Accept-Language: de'   (the standard page)
  curl -sI {url}/help/returns                           (help articles stay standard)

Or open {url}/ in a browser and open "Why am I seeing this?".
""",
        flush=True,
    )
    uvicorn.run("examples.shop.app:app", host=host, port=port, log_level="info")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
