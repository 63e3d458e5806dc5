"""Choosing each slot's content for one visitor, and rendering it with its badge.

The rules decide, the same rules explain (see rules.py), and this module only orders that work:
decisions for a page are made once, when its response starts, so that headers (the ETag) can
name the variant set before the body streams.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from babel.dates import format_date
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from edge_personalize.cache import BoundedCache
from edge_personalize.config import Config, Variant
from edge_personalize.context import SignalReaders, VisitorContext
from edge_personalize.explain import Fact, purpose_text, stored_text
from edge_personalize.i18n import cldr_locale, translations
from edge_personalize.routes import RoutePlan
from edge_personalize.rules import Condition
from edge_personalize.switches import ALL_ON, Switches

logger = logging.getLogger("edge_personalize")

_PACKAGE_TEMPLATES = [
    Path(__file__).parent / "templates",  # installed wheel
    Path(__file__).parent.parent / "templates",  # source checkout
]


@dataclass(frozen=True, slots=True)
class Decision:
    slot: str
    variant: Variant | None
    reason: str  # matched | no-match | holdout | switched-off | error
    signals: frozenset[str] = frozenset()  # what the rules tried on the way read

    @property
    def condition(self) -> Condition:
        assert self.variant is not None
        return self.variant.when  # type: ignore[return-value]


@dataclass(slots=True)
class Page:
    """Per-response state: the decisions, and what has been rendered so far."""

    personalizer: Personalizer
    ctx: VisitorContext
    path: str
    query_string: str
    charset: str
    decisions: dict[str, Decision]
    counts: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    personalized: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)

    banner_shown: bool = False

    def cache_key(self, body_digest: bytes) -> Hashable:
        """Everything the rewritten page depends on: the app's body (by its digest) and every reduced
        signal, never raw values."""
        ctx = self.ctx
        consent = ctx.consent
        return (
            body_digest,
            self.charset,
            self.path,
            self.query_string,
            ctx.page_language,
            tuple((name, d.variant.name if d.variant else None, d.reason) for name, d in self.decisions.items()),
            consent.state,
            consent.gpc,
            consent.expires.date() if consent.expires else None,
            consent.returning,
            consent.language,
            consent.country,
            ctx.location,
            ctx.referral,
            ctx.device,
            self.banner_shown,
        )

    def replay(self, shown: tuple[tuple[str, str], ...]) -> None:
        """Count a page served from the page cache as if it had been rendered."""
        counts = self.counts
        for item in shown:
            counts[item] += 1

    def shown(self) -> tuple[tuple[str, str], ...]:
        held_out = [(name, "(holdout)") for name, d in self.decisions.items() if d.reason == "holdout"]
        return (*((name, self.decisions[name].variant.name) for name in self.personalized), *held_out)  # type: ignore[union-attr]

    def variant_key(self) -> str:
        """A short digest of the variant set (and the banner), for the weak ETag."""
        chosen = sorted((name, d.variant.name if d.variant else "") for name, d in self.decisions.items())
        return hashlib.blake2b(repr((chosen, self.banner_shown)).encode(), digest_size=6).hexdigest()

    def banner(self) -> bytes | None:
        """The consent banner for this page, or None if it cannot be rendered."""
        try:
            html = self.personalizer.render_banner(self)
            body = html.encode(self.charset, "xmlcharrefreplace")
        except Exception as exc:
            logger.warning(
                "edge-personalize: consent banner failed, page served without it (%s: %s)", type(exc).__name__, exc
            )
            self.fallbacks.append("(banner)")  # so this page is never kept without it
            return None
        self.banner_shown = True
        return body

    def trace(self) -> str:
        """Per slot: the variant (or the standard content), the signals read, and whether it fell back."""
        entries = []
        for name, decision in self.decisions.items():
            chosen = decision.variant.name if decision.variant else decision.reason
            signals = " ".join(sorted(decision.signals))
            entries.append(f'{name}={chosen};signals="{signals}";fallback={int(name in self.fallbacks)}')
        return ", ".join(entries)

    def on_slot(self, name: str, default_inner_html: bytes) -> bytes | None:
        decision = self.decisions.get(name)
        if decision is not None and decision.reason == "holdout":
            self.counts[(name, "(holdout)")] += 1
        if decision is None or decision.variant is None:
            return None
        if len(self.personalized) >= self.personalizer.config.limits.max_slots_per_page:
            return None  # the page's comfort budget is spent: the rest stay standard
        try:
            html = self.personalizer.render(self, decision)
            body = html.encode(self.charset, "xmlcharrefreplace")
        except Exception as exc:
            # The one place personalization may fail: the visitor gets the default content.
            logger.warning(
                "edge-personalize: slot %r variant %r failed, default content served (%s: %s)",
                name,
                decision.variant.name,
                type(exc).__name__,
                exc,
            )
            self.fallbacks.append(name)
            return None
        self.personalized.append(name)
        self.counts[(name, decision.variant.name)] += 1
        return body


class Personalizer:
    def __init__(self, config: Config, readers: SignalReaders, *, corrections: bool = False) -> None:
        self.config = config
        self.readers = readers
        loaders = [
            FileSystemLoader(str(path)) for path in [config.templates_path, *_PACKAGE_TEMPLATES] if path.is_dir()
        ]
        self._loader = ChoiceLoader(loaders)
        self._envs: dict[str, Environment] = {}
        self._random = random.Random()
        # Badges and banners repeat (same facts, language and links): render each distinct one once.
        self._render = functools.lru_cache(maxsize=4096)(self._render_template)
        # Rewritten pages by everything they depend on (see `Page.cache_key`), for pages the app lets
        # caches share: a page seen before for the same kind of visitor costs a digest and a lookup.
        self.pages: BoundedCache[tuple[bytes, tuple[tuple[str, str], ...]]] = BoundedCache()
        # Corrections are kept in the consent cookie, so only sites that ask for consent offer them.
        self.corrections = corrections

    def environment(self, language: str) -> Environment:
        """A Jinja2 environment whose `_()` speaks `language`."""
        env = self._envs.get(language)
        if env is None:
            env = Environment(
                loader=self._loader,
                autoescape=select_autoescape(default=True, default_for_string=True),
                extensions=["jinja2.ext.i18n"],
                auto_reload=False,  # shipped and site templates are read once; a deploy restarts the process
            )
            env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
            self._envs[language] = env
        return env

    def decide(self, slots: tuple[str, ...], ctx: VisitorContext, switches: Switches = ALL_ON) -> dict[str, Decision]:
        return {name: self._decide(name, ctx, switches) for name in slots}

    def standard_reason(self, plan: RoutePlan, ctx: VisitorContext) -> str | None:
        """Why this visitor gets the standard page on this route, or None when they don't."""
        if ctx.device.is_bot:
            return "crawler"  # crawlers always get the standard page, with no badge
        if plan.route.shared_links_standard and ctx.referral.category == "social":
            return "shared-link"  # a link a friend shared shows what the friend saw
        if self.config.consent.required_for == "everything" and ctx.consent.state != "granted":
            return "consent"
        return None

    def _decide(self, name: str, ctx: VisitorContext, switches: Switches) -> Decision:
        decision = self.decide_without_holdout(name, ctx, switches)
        holdout = self.config.slots[name].holdout
        if decision.variant is not None and holdout and self._random.random() < holdout:
            # Held out: this view keeps the default, so the owner can compare both groups.
            return Decision(name, None, "holdout", decision.signals)
        return decision

    def decide_without_holdout(self, name: str, ctx: VisitorContext, switches: Switches = ALL_ON) -> Decision:
        if not switches.allows("slot", name):
            return Decision(name, None, "switched-off")
        read: set[str] = set()
        try:
            for variant in self.config.slots[name].variants:
                if not variant.enabled or not switches.allows("variant", f"{name}/{variant.name}"):
                    continue
                condition: Condition = variant.when  # type: ignore[assignment]
                read |= condition.signals
                # Consent-gated context is absent, not false, until the visitor agrees.
                if "returning" in condition.signals and ctx.returning is None:
                    continue
                if condition.matches(ctx):
                    return Decision(name, variant, "matched", frozenset(read))
        except Exception as exc:
            logger.warning("edge-personalize: slot %r could not be decided (%s: %s)", name, type(exc).__name__, exc)
            return Decision(name, None, "error", frozenset(read))
        return Decision(name, None, "no-match", frozenset(read))

    def render(self, page: Page, decision: Decision) -> str:
        variant = decision.variant
        assert variant is not None
        ctx = page.ctx
        language = ctx.page_language
        env = self.environment(language)
        if variant.template is not None:
            content = env.get_template(variant.template).render(visitor=TemplateVisitor(ctx))
        else:
            content = variant.html or ""
        if not self.config.badge.enabled:
            return content
        facts = decision.condition.explain(ctx, language)
        values = self.badge_values(page, variant, facts, first=not page.personalized)
        return content + self._render("badge.html", language, tuple(values.items()))

    def render_banner(self, page: Page) -> str:
        query = page.query_string
        values = {
            "language": page.ctx.page_language,
            "consent_url": f"{self.config.site.endpoint_prefix}/consent",
            "next": f"{page.path}?{query}" if query else page.path,
            "max_age_days": self.config.consent.max_age_days,
            "privacy_url": self.config.badge.privacy_url,
        }
        return self._render("banner.html", page.ctx.page_language, tuple(values.items()))

    def _render_template(self, name: str, language: str, values: tuple[tuple[str, Any], ...]) -> str:
        return self.environment(language).get_template(name).render(dict(values))

    def badge_values(self, page: Page, variant: Variant, facts: list[Fact], *, first: bool) -> dict[str, Any]:
        prefix = self.config.site.endpoint_prefix
        query = [(k, v) for k, v in parse_qsl(page.query_string) if k != self.config.site.standard_param]
        standard = urlencode([*query, (self.config.site.standard_param, "off")])
        consent = page.ctx.consent
        language = page.ctx.page_language
        expires = format_date(consent.expires, format="long", locale=cldr_locale(language)) if consent.expires else ""
        why_query = {"path": page.path}
        if any("referrer" in decision.signals for decision in page.decisions.values()):
            # The why page is reached from this page: tell it where the visit came from.
            why_query["ref"] = page.ctx.referral.category
        why = f"{prefix}/why?{urlencode(why_query)}"
        return {
            "facts": tuple(facts),
            "purpose": purpose_text(variant.purpose, language),
            "stored": stored_text(consent, language, expires),
            "correctable": self.corrections and any(f.signal in ("language", "country") for f in facts),
            "correct_url": f"{why}#correct",
            "standard_url": f"{page.path}?{standard}",
            "share_url": f"{page.path}?{urlencode([*query, (self.config.site.standard_param, 'shared')])}",
            "why_url": why,
            "privacy_url": self.config.badge.privacy_url,
            "include_style": first,
            "language": language,
        }


class TemplateVisitor:
    """What a variant template may read about the visitor: reduced values only, read on use."""

    def __init__(self, ctx: VisitorContext) -> None:
        self._ctx = ctx

    @property
    def language(self) -> str:
        return self._ctx.page_language

    @property
    def country(self) -> str | None:
        return self._ctx.location.country

    @property
    def referrer(self) -> str:
        return self._ctx.referral.category

    @property
    def campaign(self) -> str | None:
        return self._ctx.referral.campaign

    @property
    def device(self) -> str:
        return self._ctx.device.kind
