"""What a visitor gets on a path and why, and the site's whole policy: both read the same rules.

`explain_page` answers the why page for one visitor; `site_policy` is policy.json, the public
description of every route, slot and variant with the signals each reads. Neither holds anything
but reduced values: no raw header ever reaches them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from babel.dates import format_date

from edge_personalize.consent import Consent
from edge_personalize.context import VisitorContext
from edge_personalize.explain import describe, purpose_text, standard_reason_text, stored_text
from edge_personalize.i18n import cldr_locale, translations
from edge_personalize.rules import REFERRER_CATEGORIES, Condition
from edge_personalize.signals.referrer import Referral

if TYPE_CHECKING:
    from starlette.types import Scope

    from edge_personalize.config import Config
    from edge_personalize.middleware import PersonalizeMiddleware
    from edge_personalize.preview import Simulation


def visitor_context(middleware: PersonalizeMiddleware, scope: Scope, ref: str | None) -> VisitorContext:
    """The why page's visitor, as the page they came from saw them."""
    consent = middleware.consent.read(scope) if middleware.consent_dependent else Consent()
    ctx = VisitorContext(middleware.readers, scope, consent)
    if ref in REFERRER_CATEGORIES:
        # The why page is reached from the site itself; the badge's link says where the visit came from.
        ctx.__dict__["referral"] = Referral(ref, None, None)  # type: ignore[arg-type]
    return ctx


def explain_page(middleware: PersonalizeMiddleware, ctx: VisitorContext, path: str) -> dict[str, Any]:
    """Everything the why page shows about `path` for the visitor `ctx`."""
    config = middleware.config
    consent = ctx.consent
    switches = middleware.switches.current()
    language = ctx.page_language
    gettext = translations(language).gettext
    plan = middleware.routes.match(path)
    if plan is not None and not switches.personalizes(plan.route.path):
        plan = None
    standard_url = f"{path}?{urlencode({config.site.standard_param: 'off'})}"
    page: dict[str, Any] = {
        "path": path,
        "language": language,
        "personalized": plan is not None,
        "standard_reason": None,
        "slots": [],
        "stored": {
            "state": consent.state,
            "stored": consent.stored,
            "expires": consent.expires.date().isoformat() if consent.expires else None,
            "text": stored_text(consent, language, _long_date(consent, language)),
        },
        "standard_url": standard_url,
        "share_url": f"{path}?{urlencode({config.site.standard_param: 'shared'})}",
        "max_slots_per_page": config.limits.max_slots_per_page,
        "can_choose": middleware.show_banner,
        "corrections": middleware.show_banner,
    }
    if plan is None:
        page["standard_reason"] = gettext("This page is the same for everyone: nothing on it is personalized.")
        return page
    personalizer = middleware.personalizer
    reason = personalizer.standard_reason(plan, ctx)
    page["standard_reason"] = standard_reason_text(reason, language) if reason else None
    for name in plan.slots:
        slot = config.slots[name]
        decision = personalizer.decide_without_holdout(name, ctx, switches)
        chosen = decision.variant if reason is None else None
        entry: dict[str, Any] = {
            "name": name,
            "variant": chosen.name if chosen else None,
            "purpose": chosen.purpose if chosen else None,
            "purpose_text": purpose_text(chosen.purpose, language) if chosen else None,
            "facts": [_fact(f) for f in decision.condition.explain(ctx, language)] if chosen else [],
            "holdout": slot.holdout,
            "alternatives": [],
        }
        for variant in slot.variants:
            condition: Condition = variant.when  # type: ignore[assignment]
            enabled = variant.enabled and switches.allows("variant", f"{name}/{variant.name}")
            status, why_not = _status(variant.name, chosen, condition, ctx, language, enabled)
            entry["alternatives"].append(
                {
                    "name": variant.name,
                    "purpose": variant.purpose,
                    "purpose_text": purpose_text(variant.purpose, language),
                    "when": describe(condition.to_data(), language),
                    "signals": sorted(condition.signals),
                    "status": status,
                    "why_not": why_not,
                }
            )
        page["slots"].append(entry)
    return page


def simulate(middleware: PersonalizeMiddleware, path: str, simulation: Simulation) -> list[dict[str, Any]]:
    """What each slot on `path` gives a simulated visitor, and why (for the owner page and the CLI)."""
    page = explain_page(middleware, simulation.context(middleware.readers), path)
    return [
        {
            "name": slot["name"],
            "variant": slot["variant"],
            "why": [fact["text"] for fact in slot["facts"]]
            or [text for alternative in slot["alternatives"] for text in alternative["why_not"]],
        }
        for slot in page["slots"]
    ]


def _status(
    name: str, chosen: Any, condition: Condition, ctx: VisitorContext, language: str, enabled: bool
) -> tuple[str, list[str]]:
    if chosen is not None and chosen.name == name:
        return "chosen", []
    if not enabled:
        return "switched-off", []
    if "returning" in condition.signals and ctx.returning is None:
        return "needs-consent", []
    if condition.matches(ctx):
        return "applies", []  # an earlier variant won
    return "does-not-apply", [fact.text for fact in condition.why_not(ctx, language)]


def _fact(fact: Any) -> dict[str, Any]:
    return {"signal": fact.signal, "value": fact.value, "source": fact.source, "text": fact.text}


def _long_date(consent: Consent, language: str) -> str:
    return format_date(consent.expires, format="long", locale=cldr_locale(language)) if consent.expires else ""


def site_policy(config: Config, middleware: PersonalizeMiddleware) -> dict[str, Any]:
    """The whole personalization policy, public: no visitor data, no variant content."""
    routes = []
    for route in config.routes:
        plan = middleware.routes.plan_for(route)
        routes.append(
            {
                "path": route.path,
                "enabled": plan is not None,
                "shared_links_standard": route.shared_links_standard,
                "slots": list(route.slots),
                "signals": sorted(plan.signals) if plan else [],
                "cache": {"vary": list(plan.vary), "private": plan.private} if plan else None,
            }
        )
    return {
        "site": {
            "languages": list(config.site.languages),
            "default_language": config.site.languages[0],
            "standard_param": config.site.standard_param,
            "standard_page": f"?{config.site.standard_param}=off",
            "endpoint_prefix": config.site.endpoint_prefix,
        },
        "location": {
            "source": config.location.source,
            "provider": config.location.provider if config.location.source == "header" else None,
            "precision": "city" if config.location.allow_precise else "region",
        },
        "consent": {
            "required_for": config.consent.required_for,
            "asks": middleware.show_banner,
            "policy_version": config.consent.policy_version,
            "max_age_days": config.consent.max_age_days,
            "honor_gpc": config.consent.honor_gpc,
            "cookie_holds": ["choice", "policy version", "time of choice", "first-visit date", "corrections"],
        },
        "limits": {
            "max_slots_per_page": config.limits.max_slots_per_page,
            "max_signals_per_variant": config.limits.max_signals_per_variant,
        },
        "routes": routes,
        "slots": {
            name: {
                "enabled": slot.enabled,
                "holdout": slot.holdout,
                "variants": [
                    {
                        "name": variant.name,
                        "enabled": variant.enabled,
                        "purpose": variant.purpose,
                        "when": variant.when.to_data(),  # type: ignore[union-attr]
                        "signals": sorted(variant.when.signals),  # type: ignore[union-attr]
                    }
                    for variant in slot.variants
                ],
            }
            for name, slot in config.slots.items()
        },
    }
