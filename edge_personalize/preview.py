"""Simulated visitors: the owner's simulator, signed preview links, and the CLI's `explain`.

A preview link carries a chosen context, signed and bound to one path, that expires. Opening it
shows the page as that context would see it, with the badge and a decision trace, without
reading the visitor's own signals and without setting a cookie.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeTimedSerializer

from edge_personalize.consent import Consent
from edge_personalize.context import SignalReaders, VisitorContext
from edge_personalize.rules import DEVICE_CLASSES, REFERRER_CATEGORIES
from edge_personalize.signals.device import Device
from edge_personalize.signals.location import Location
from edge_personalize.signals.referrer import Referral, classify_referral

PREVIEW_PARAM = "ep_preview"
DEFAULT_PREVIEW_SECONDS = 3600
_CONSENT_STATES = ("unknown", "granted", "refused")


@dataclass(frozen=True, slots=True)
class Simulation:
    """A visitor context chosen by the site owner, in reduced form only."""

    language: str | None = None
    country: str | None = None
    region: str | None = None  # ISO 3166-2 without the country, e.g. "9" for AT-9
    referrer: str = "direct"
    referrer_domain: str | None = None
    campaign: str | None = None
    device: str = "desktop"
    consent: str = "unknown"
    returning: bool = False

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Simulation:
        """From form fields or a preview token; anything unknown falls back to the defaults."""

        def text(key: str) -> str | None:
            value = values.get(key)
            return str(value).strip()[:64] or None if value is not None else None

        referrer = text("referrer") or "direct"
        referrer_domain = None
        if referrer not in REFERRER_CATEGORIES:
            # A URL: reduce it at once, as a real visit would be.
            referral = classify_referral(referrer, None, "")
            referrer, referrer_domain = referral.category, referral.domain
        country = (text("country") or "").upper() or None
        region = (text("region") or "").upper() or None
        if region and "-" in region:
            country, _, region = region.partition("-")
        device = text("device") or "desktop"
        consent = text("consent") or "unknown"
        return cls(
            language=text("language"),
            country=country if country and len(country) == 2 and country.isalpha() else None,
            region=region if region and region.isalnum() else None,
            referrer=referrer,
            referrer_domain=text("referrer_domain") or referrer_domain,
            campaign=text("campaign"),
            device=device if device in (*DEVICE_CLASSES, "unknown") else "desktop",
            consent=consent if consent in _CONSENT_STATES else "unknown",
            returning=str(values.get("returning", "")).lower() in ("1", "true", "yes", "on"),
        )

    def to_values(self) -> dict[str, Any]:
        return {
            item.name: getattr(self, item.name)
            for item in fields(self)
            if getattr(self, item.name) not in (None, False)
        }

    def context(self, readers: SignalReaders) -> VisitorContext:
        consent = Consent(
            state=self.consent,  # type: ignore[arg-type]
            returning=self.returning if self.consent == "granted" else None,
        )
        source = "simulation"
        return VisitorContext.simulated(
            readers,
            language=self.language,
            location=Location(self.country, self.region if self.country else None, None, source)
            if self.country
            else Location(None, None, None, None),
            referral=Referral(self.referrer, self.referrer_domain, self.campaign),  # type: ignore[arg-type]
            device=Device(self.device, False, "user agent"),  # type: ignore[arg-type]
            consent=consent,
        )


class Previews:
    def __init__(self, signing_keys: list[str], *, max_age: int = DEFAULT_PREVIEW_SECONDS) -> None:
        self._serializer = URLSafeTimedSerializer(list(reversed(signing_keys)), salt="edge-personalize.preview")
        self.max_age = max_age

    def link(self, path: str, simulation: Simulation) -> str:
        """A relative URL that previews `path` as `simulation` would see it."""
        token = self._serializer.dumps({"p": path, "s": simulation.to_values()})
        return f"{path}?{urlencode({PREVIEW_PARAM: token})}"

    def read(self, token: str, path: str) -> Simulation | None:
        """The simulation in a valid, unexpired token for this very path; None otherwise."""
        try:
            data = self._serializer.loads(token, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict) or data.get("p") != path or not isinstance(data.get("s"), dict):
            return None
        return Simulation.from_values(data["s"])
