"""The `edge-personalize` command: check a policy, explain a decision, make a preview link,
flip a switch, or run the demo shop. Exit codes: 0 fine, 1 problems found, 2 usage."""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_personalize.config import Config, load_config
from edge_personalize.errors import ConfigError

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
DEMO_OWNER_TOKEN_HASH = "sha256:2a97516c354b68848cdbd8f54a226a0a55b21ed138e207ad6c5cbb9c00aa5aea"  # sha256("demo")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-personalize", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a personalize.toml and warn about rules that cannot work")
    check.add_argument("config", type=Path)
    for name, text in (("explain", "print the decision and the badge text"), ("preview-link", "print a signed link")):
        command = commands.add_parser(name, help=text)
        command.add_argument("config", type=Path)
        command.add_argument("path")
        command.add_argument("--language")
        command.add_argument("--country")
        command.add_argument("--region", help="ISO 3166-2, e.g. AT-9")
        command.add_argument("--referrer", help="a category (search, social, ...) or a referring URL")
        command.add_argument("--campaign")
        command.add_argument("--device", choices=["mobile", "tablet", "desktop", "unknown"])
        command.add_argument("--consent", choices=["unknown", "granted", "refused"])
        command.add_argument("--returning", action="store_true")
    switch = commands.add_parser("switch", help="turn a site, route, slot or variant (slot/variant) on or off")
    switch.add_argument("config", type=Path)
    switch.add_argument("level", choices=["site", "route", "slot", "variant"])
    switch.add_argument("name", help="'*' for the site, a route path, a slot name, or slot/variant")
    switch.add_argument("state", choices=["on", "off"])
    demo = commands.add_parser("demo", help="run the example shop on http://127.0.0.1:8000")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    if args.command == "demo":
        return demo_command(args.host, args.port)
    try:
        config = load_config(args.config)
        if args.command == "check":
            return check_command(args.config, config)
        if args.command == "switch":
            return switch_command(config, args.level, args.name, args.state == "on")
        return simulate_command(args.command, config, args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS


def check_command(path: Path, config: Config) -> int:
    warnings = list(policy_warnings(config))
    for warning in warnings:
        print(f"warning: {path.name}: {warning}")
    variants = sum(len(slot.variants) for slot in config.slots.values())
    summary = f"{len(config.routes)} routes, {len(config.slots)} slots, {variants} variants"
    print(f"{path}: {'ok' if not warnings else f'{len(warnings)} problem(s)'} ({summary})")
    return EXIT_PROBLEMS if warnings else EXIT_OK


def policy_warnings(config: Config) -> Iterator[str]:
    """Problems a policy can load with but should not have."""
    used = {slot for route in config.routes for slot in route.slots}
    for name in config.slots:
        if name not in used:
            yield f"slots.{name}: configured on no route"
    for i, route in enumerate(config.routes):
        if route.enabled and len(route.slots) > config.limits.max_slots_per_page:
            yield (
                f"routes[{i}] ({route.path}): {len(route.slots)} slots, over the comfort budget of"
                f" {config.limits.max_slots_per_page} per page; the later ones stay standard"
            )
    for name, slot in config.slots.items():
        for j, later in enumerate(slot.variants):
            for i, earlier in enumerate(slot.variants[:j]):
                if earlier.enabled and _always_first(config, earlier.when, later.when):
                    yield (
                        f"slots.{name}.variants[{j}] ({later.name}): can never win, because"
                        f" variants[{i}] ({earlier.name}) always matches first"
                    )
                    break


def _always_first(config: Config, earlier: Any, later: Any) -> bool:
    """Whether every context matching `later` also matches `earlier`: tried on every combination of
    the values the two conditions mention, plus one value neither mentions."""
    from edge_personalize.consent import Consent
    from edge_personalize.context import SignalReaders, VisitorContext
    from edge_personalize.rules import DEVICE_CLASSES, REFERRER_CATEGORIES
    from edge_personalize.signals.device import Device
    from edge_personalize.signals.location import Location
    from edge_personalize.signals.referrer import Referral

    mentioned: dict[str, set[Any]] = {}
    for condition in (earlier, later):
        _collect(condition.to_data(), mentioned)
    languages = [None, *config.site.languages]
    places: list[tuple[str | None, str | None, str | None]] = [(None, None, None), ("ZZ", None, None)]
    places += [(c, None, None) for c in mentioned.get("country", ())]
    places += [(r.split("-")[0], r.split("-", 1)[1], None) for r in mentioned.get("region", ())]
    places += [("ZZ", None, c) for c in mentioned.get("city", ())]
    referrals = [Referral(category, None, None) for category in REFERRER_CATEGORIES]  # type: ignore[arg-type]
    referrals += [Referral("other", d, None) for d in mentioned.get("referrer_domain", ())]
    referrals += [Referral("campaign", None, c) for c in mentioned.get("campaign", ())]
    devices = [*DEVICE_CLASSES, "unknown"]
    returning = [None, True, False]
    readers = SignalReaders(config)
    later_gated = "returning" in later.signals
    earlier_gated = "returning" in earlier.signals
    for language, place, referral, device, back in itertools.product(languages, places, referrals, devices, returning):
        consent = Consent("granted", returning=back) if back is not None else Consent()
        ctx = VisitorContext.simulated(
            readers,
            language=language,
            location=Location(place[0], place[1], place[2], "simulation"),
            referral=referral,
            device=Device(device, False, "user agent"),  # type: ignore[arg-type]
            consent=consent,
        )
        if later_gated and back is None:
            continue  # the later variant is skipped here anyway
        if later.matches(ctx) and not (earlier.matches(ctx) and not (earlier_gated and back is None)):
            return False
    return True


def _collect(data: Any, into: dict[str, set[Any]]) -> None:
    if isinstance(data, list):
        for item in data:
            _collect(item, into)
    elif isinstance(data, dict):
        for key, value in data.items():
            if key in ("all", "any", "not"):
                _collect(value, into)
            else:
                into.setdefault(key, set()).update(value if isinstance(value, list) else [value])


def simulate_command(command: str, config: Config, args: argparse.Namespace) -> int:
    from edge_personalize.middleware import PersonalizeMiddleware
    from edge_personalize.preview import Simulation
    from edge_personalize.why import simulate

    if not os.environ.get(config.site.secret_keys_env) and not config.secret_keys:
        if command == "preview-link":
            raise ConfigError(
                f"{config.source}: preview links are signed with the site's secret: set {config.site.secret_keys_env}"
            )
        # Explaining signs nothing; a throwaway key keeps the middleware's start-up check happy.
        config = replace(config, secret_keys=(secrets.token_urlsafe(32),))
    middleware = PersonalizeMiddleware(_no_app, config=config)
    values = {key: getattr(args, key) for key in ("language", "country", "region", "referrer", "campaign", "device")}
    simulation = Simulation.from_values({**values, "consent": args.consent, "returning": args.returning})
    if command == "preview-link":
        print(middleware.previews.link(args.path, simulation))
        return EXIT_OK
    slots = simulate(middleware, args.path, simulation)
    if not slots:
        print(f"{args.path}: nothing on this path is personalized")
    for slot in slots:
        print(f"{slot['name']}: {slot['variant'] or 'standard content'}")
        for line in slot["why"]:
            print(f"  - {line}")
    return EXIT_OK


async def _no_app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise RuntimeError("the CLI does not serve requests")


def switch_command(config: Config, level: str, name: str, on: bool) -> int:
    from edge_personalize.switches import SwitchStoreError, open_store

    store = open_store(config.resolve(config.owner.switches), config.owner.redis_url)
    try:
        store.set(level, name, on)  # type: ignore[arg-type]
    except (SwitchStoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    finally:
        store.close()
    print(f"{level} {name}: {'on' if on else 'off'}")
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
    from edge_personalize.preview import Previews, Simulation

    # A fresh development secret each run (also for a variable set empty): consent cookies from
    # earlier runs simply stop counting.
    if not os.environ.get("EDGE_PERSONALIZE_SECRET", "").strip():
        os.environ["EDGE_PERSONALIZE_SECRET"] = secrets.token_urlsafe(32)
    # The demo's owner token is "demo": never use a guessable token on a real site.
    os.environ.setdefault("EDGE_PERSONALIZE_OWNER_TOKEN_HASH", DEMO_OWNER_TOKEN_HASH)
    sys.path.insert(0, str(shop.parent.parent))
    url = f"http://{host}:{port}"
    config = shop / "personalize.toml"
    keys = [key.strip() for key in os.environ["EDGE_PERSONALIZE_SECRET"].split(",")]
    preview = Previews(keys).link("/", Simulation(language="fr", country="AT", device="mobile"))
    print(
        f"""The demo shop runs on {url}/ (Ctrl+C stops it). Try:

  curl -s {url}/ -H 'Accept-Language: de-AT,de;q=0.9' | grep -A2 'data-personalize="hero"'
  curl -s {url}/products -H 'CF-IPCountry: AT'         | grep -A2 'data-personalize="shipping"'
  curl -s {url}/ -H 'Referer: https://www.google.com/' | grep -A2 'data-personalize="welcome"'
  curl -s '{url}/?utm_source=news&utm_campaign=spring' | grep -A2 'data-personalize="welcome"'
  curl -s '{url}/?personalize=off' -H 'Accept-Language: de'   (the standard page)
  curl -sI {url}/help/returns                           (help articles stay standard)
  curl -s {url}/_personalize/policy.json                (the whole policy, public)

Why a visitor gets what they get:  {url}/_personalize/why?path=/
The owner page (user anything, password "demo"): {url}/_personalize/admin
Explain a context:  edge-personalize explain {config} / --language de --country AT --referrer search
A preview link (French speaker on a phone in Austria, valid for an hour):
  {url}{preview}

Or open {url}/ in a browser and open "Why am I seeing this?".
""",
        flush=True,
    )
    uvicorn.run("examples.shop.app:app", host=host, port=port, log_level="info")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
