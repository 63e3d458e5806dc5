"""Which configured route a path belongs to, and what its responses must say to caches.

Everything here is computed once per configuration: a request only walks the compiled table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.routing import compile_path

from edge_personalize.config import Config, Route


@dataclass(frozen=True, slots=True)
class RoutePlan:
    route: Route
    slots: tuple[str, ...]
    signals: frozenset[str]  # every signal a rule on this route may read
    vary: tuple[str, ...]  # request headers the response depends on
    private: bool  # depends on something a shared cache cannot key on
    random: bool = False  # a slot holds some views out at random: the same request may get another page


class RouteTable:
    def __init__(
        self,
        config: Config,
        cache_keys: Mapping[str, tuple[str, ...]],
        *,
        enabled: bool = True,
        consent_dependent: bool = False,
    ) -> None:
        """`cache_keys` maps each signal a shared cache can key on to the request headers it is read
        from (empty for one read from the URL only); any other signal makes a response private, and
        so does the visitor's consent when the site keeps anything that needs it."""
        self._plans: list[tuple[Route, RoutePlan | None]] = []
        # A path written out is looked up at once, any other one matched against the patterns in
        # order; a path a pattern above it matches, or listed twice, is left to that earlier route.
        self._exact: dict[str, RoutePlan | None] = {}
        self._patterns: list[tuple[re.Pattern[str], RoutePlan | None]] = []
        for route in config.routes:
            plan = (
                _plan(config, route, cache_keys, consent_dependent)
                if enabled and route.enabled and config.site.enabled
                else None
            )
            self._plans.append((route, plan))
            if "{" in route.path:
                self._patterns.append((compile_path(route.path)[0], plan))
            elif route.path not in self._exact and not any(pattern.match(route.path) for pattern, _ in self._patterns):
                self._exact[route.path] = plan

    def plan_for(self, route: Route) -> RoutePlan | None:
        """The plan of a configured route; None when it is switched off or has no slots."""
        return next(plan for candidate, plan in self._plans if candidate is route)

    def match(self, path: str) -> RoutePlan | None:
        """The plan of the first route matching `path`; None when unmatched or switched off."""
        if path in self._exact:
            return self._exact[path]
        for pattern, plan in self._patterns:
            if pattern.match(path):
                return plan
        return None


def _plan(
    config: Config, route: Route, cache_keys: Mapping[str, tuple[str, ...]], consent_dependent: bool
) -> RoutePlan | None:
    slots = tuple(name for name in route.slots if config.slots[name].enabled)
    if not slots:
        return None
    signals: set[str] = set()
    for name in slots:
        for variant in config.slots[name].variants:
            signals |= variant.when.signals  # type: ignore[union-attr]
    if route.shared_links_standard:
        signals.add("referrer")
    # The badge and the banner speak the page's language, whatever the rules read.
    vary: list[str] = list(cache_keys["language"]) if len(config.site.languages) > 1 else []
    private = False
    if consent_dependent:
        # The banner, corrections and consent-gated context come from the cookie and Sec-GPC.
        if config.consent.vary_cookie:
            vary.extend(("Cookie", "Sec-GPC"))
        else:
            private = True
    for signal in sorted(signals - {"returning"}):  # consent-gated: covered by consent_dependent above
        if signal in cache_keys:
            vary.extend(cache_keys[signal])
        else:
            private = True
    return RoutePlan(
        route=route,
        slots=slots,
        signals=frozenset(signals),
        vary=tuple(dict.fromkeys(vary)),
        private=private,
        random=any(config.slots[name].holdout > 0 for name in slots),
    )
