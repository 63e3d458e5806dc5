"""The visitor's choice: unknown until they make one, then one signed cookie holding a few facts.

Nothing here writes a cookie on its own: `cookie_header` is called only for the direct response to
the visitor's own choice (the consent form, a correction). A refusal is remembered by a cookie
that holds only the refusal; `Sec-GPC: 1` counts as a refusal without any cookie.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import Headers
from starlette.requests import Request, cookie_parser
from starlette.types import Scope

from edge_personalize.config import Config

ConsentState = Literal["unknown", "granted", "refused"]
COOKIE_NAME = "ep_consent"
SECURE_COOKIE_NAME = "__Host-ep_consent"  # on https: bound to this host and path, never sent over http
_CHOICE_CODES = {"granted": "g", "refused": "r"}
_COUNTRY = re.compile(r"[A-Z]{2}")

events = logging.getLogger("edge_personalize.consent")


@dataclass(frozen=True, slots=True)
class Consent:
    """What the visitor chose, and the facts they let the site keep."""

    state: ConsentState = "unknown"
    policy_version: str | None = None
    chosen_at: datetime | None = None
    first_visit: date | None = None
    returning: bool | None = None  # only known with consent
    language: str | None = None  # the visitor's own correction
    country: str | None = None  # the visitor's own correction
    gpc: bool = False  # refused because the browser sent Sec-GPC: 1
    expires: datetime | None = None  # when the stored choice runs out

    @property
    def stored(self) -> bool:
        return self.state != "unknown" and not self.gpc


NO_CONSENT = Consent()


def settled_until(consent: Consent, now: datetime) -> datetime | None:
    """Until when what a page shows for this consent stays true: until the stored choice runs out and,
    for a granted one, the end of today (a first visit today makes a returning visitor tomorrow).
    None: for as long as the policy and the switches stay as they are."""
    until = consent.expires
    if consent.state == "granted":
        midnight = datetime.combine(now.date() + timedelta(days=1), time.min, tzinfo=now.tzinfo)
        until = midnight if until is None else min(until, midnight)
    return until


ConsentReader = Callable[[Request], "ConsentState | Consent"]


def needs_consent(config: Config) -> bool:
    """Whether anything on the site waits for consent: then the visitor is asked, and pages depend on the answer."""
    return config.consent.required_for == "everything" or any(
        "returning" in variant.when.signals  # type: ignore[union-attr]
        for slot in config.slots.values()
        for variant in slot.variants
    )


class ConsentManager:
    """Reads the visitor's choice from a request and writes the cookie for a new one."""

    def __init__(
        self,
        config: Config,
        signing_keys: list[str],
        *,
        reader: ConsentReader | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = config.consent
        self.languages = config.site.languages
        self.reader = reader
        self.clock = clock or (lambda: datetime.now(UTC))
        # itsdangerous signs with the last key and accepts all: the config lists the newest first.
        self._serializer = URLSafeTimedSerializer(list(reversed(signing_keys)), salt="edge-personalize.consent")
        self._max_age = self.settings.max_age_days * 86400

    def read(self, scope: Scope) -> Consent:
        if self.reader is not None:
            result = self.reader(Request(scope))
            return result if isinstance(result, Consent) else Consent(state=result)
        headers = Headers(scope=scope)
        stored = self._from_cookie(headers.get("cookie"))
        if self.settings.honor_gpc and headers.get("sec-gpc", "").strip() == "1" and stored.state != "granted":
            # Only an explicit accept made while sending GPC outranks it.
            return Consent(state="refused", gpc=True)
        return stored

    def _from_cookie(self, header: str | None) -> Consent:
        if not header or COOKIE_NAME not in header:
            return NO_CONSENT
        cookies = cookie_parser(header)
        value = cookies.get(SECURE_COOKIE_NAME) or cookies.get(COOKIE_NAME)
        if not value:
            return NO_CONSENT
        try:
            data, signed_at = self._serializer.loads(value, max_age=self._max_age, return_timestamp=True)
        except BadSignature:  # tampered, expired or signed with a retired key
            return NO_CONSENT
        return self._decode(data, signed_at)

    def _decode(self, data: Any, signed_at: datetime) -> Consent:
        if not isinstance(data, dict) or data.get("v") != self.settings.policy_version:
            return NO_CONSENT  # an older policy: ask again
        if data.get("c") == "r":
            return Consent(
                state="refused", policy_version=data["v"], chosen_at=signed_at, expires=self._expiry(signed_at)
            )
        if data.get("c") != "g":
            return NO_CONSENT
        try:
            first_visit = date.fromisoformat(data["f"]) if isinstance(data.get("f"), str) else None
        except ValueError:
            first_visit = None
        language = data.get("l") if data.get("l") in self.languages else None
        country = data.get("k") if isinstance(data.get("k"), str) and _COUNTRY.fullmatch(data["k"]) else None
        today = self.clock().date()
        return Consent(
            state="granted",
            policy_version=data["v"],
            chosen_at=signed_at,
            first_visit=first_visit,
            returning=first_visit is not None and first_visit < today,
            language=language,
            country=country,
            expires=self._expiry(signed_at),
        )

    def _expiry(self, signed_at: datetime) -> datetime:
        return datetime.fromtimestamp(signed_at.timestamp() + self._max_age, UTC)

    def choose(self, previous: Consent, choice: str) -> Consent | None:
        """The consent after `choice` (accept, reject, withdraw); None means no stored choice."""
        now = self.clock()
        if choice == "withdraw":
            self._log(choice, now)
            return None
        if choice == "reject":
            self._log(choice, now)
            return Consent(state="refused", policy_version=self.settings.policy_version, chosen_at=now)
        if choice == "accept":
            self._log(choice, now)
            kept = previous if previous.state == "granted" else NO_CONSENT
            return Consent(
                state="granted",
                policy_version=self.settings.policy_version,
                chosen_at=now,
                first_visit=kept.first_visit or now.date(),
                language=kept.language,
                country=kept.country,
            )
        raise ValueError(f"unknown choice {choice!r}")

    def correct(self, previous: Consent, *, language: str | None, country: str | None) -> Consent:
        """Accept (if not yet) and remember the visitor's own language or country."""
        granted = previous if previous.state == "granted" else self.choose(previous, "accept")
        assert granted is not None
        if language is not None and language not in self.languages:
            language = None
        if country is not None and not _COUNTRY.fullmatch(country):
            country = None
        return replace(granted, language=language or granted.language, country=country or granted.country)

    def cookie_header(self, consent: Consent | None, *, secure: bool) -> list[str]:
        """Set-Cookie values that store `consent` (or delete the cookie for None)."""
        name = SECURE_COOKIE_NAME if secure else COOKIE_NAME
        attributes = "; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
        deletions = [f"{other}=; Max-Age=0{attributes}" for other in (COOKIE_NAME, SECURE_COOKIE_NAME) if other != name]
        if consent is None:
            return [f"{name}=; Max-Age=0{attributes}", *deletions]
        data: dict[str, str] = {"c": _CHOICE_CODES[consent.state], "v": self.settings.policy_version}
        if consent.state == "granted":
            if consent.first_visit is not None:
                data["f"] = consent.first_visit.isoformat()
            if consent.language is not None:
                data["l"] = consent.language
            if consent.country is not None:
                data["k"] = consent.country
        value = self._serializer.dumps(data)
        return [f"{name}={value}; Max-Age={self._max_age}{attributes}", *deletions]

    def _log(self, choice: str, now: datetime) -> None:
        # Proof of consent for the site: the choice, the policy and the time, and nothing about the visitor.
        events.info(
            "consent choice=%s policy_version=%s at=%s",
            choice,
            self.settings.policy_version,
            now.isoformat(timespec="seconds"),
        )
