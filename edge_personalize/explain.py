"""Plain-language statements of the facts a decision read, in the page's language.

Each statement is built from the reduced signal value and where it came from; raw header values
never reach it. The returned text is plain (not HTML): templates escape it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_personalize.i18n import country_name, translations
from edge_personalize.signals.language import language_name

if TYPE_CHECKING:
    from edge_personalize.consent import Consent
    from edge_personalize.context import VisitorContext

PURPOSES = ("reward", "remind", "recognize", "support", "choose")


@dataclass(frozen=True, slots=True)
class Fact:
    signal: str
    value: str | None  # the reduced value that was read, None when unknown
    source: str | None  # where the value came from (a header name, a database, the visitor's choice)
    text: str


def _(language: str, message: str) -> str:
    return translations(language).gettext(message)


def fact(signal: str, ctx: VisitorContext, language: str) -> Fact:
    """State what `ctx` observed for `signal`, in `language`."""
    if signal == "language":
        return _language_fact(ctx, language)
    if signal in ("country", "region", "city"):
        return _location_fact(signal, ctx, language)
    if signal in ("referrer", "referrer_domain", "campaign"):
        return _referral_fact(signal, ctx, language)
    if signal == "device":
        return _device_fact(ctx, language)
    if signal == "returning":
        return _returning_fact(ctx, language)
    raise ValueError(f"unknown signal {signal!r}")


def _language_fact(ctx: VisitorContext, language: str) -> Fact:
    value = ctx.language
    if value is None:
        text = _(language, "Your browser asks for no language this site offers.")
        return Fact("language", None, "Accept-Language", text)
    name = language_name(value, language)
    if ctx.language_source == "your choice":
        text = _(language, "You chose pages in {language}.").format(language=name)
    else:
        text = _(language, "Your browser asks for pages in {language}.").format(language=name)
    return Fact("language", value, ctx.language_source, text)


def _location_fact(signal: str, ctx: VisitorContext, language: str) -> Fact:
    location = ctx.location
    source = location.source
    if location.country is None:
        text = _(language, "We could not tell which country you are in.")
        return Fact(signal, None, source, text)
    country = country_name(location.country, language)
    based_on = _source_phrase(source, ctx.location_corrected, language)
    if signal == "country":
        value: str | None = location.country
        text = _(language, "You appear to be in {country}, {based_on}.").format(country=country, based_on=based_on)
    elif signal == "region":
        value = f"{location.country}-{location.region}" if location.region else None
        if value is None:
            text = _(language, "We could not tell which region of {country} you are in.").format(country=country)
        else:
            text = _(language, "You appear to be in the region {region} of {country}, {based_on}.").format(
                region=value, country=country, based_on=based_on
            )
    else:
        value = location.city
        if value is None:
            text = _(language, "We could not tell which city you are near.")
        else:
            text = _(language, "You appear to be in or near {city}, {based_on}.").format(city=value, based_on=based_on)
    return Fact(signal, value, source, text)


def _source_phrase(source: str | None, corrected: bool, language: str) -> str:
    if corrected:
        return _(language, "as you told us")
    if source == "simulation":
        return _(language, "in this simulation")
    if source and source.endswith(".mmdb"):
        return _(language, "looked up from your network address in a location database")
    return _(language, "according to the location header of this site's network ({header})").format(header=source)


def _referral_fact(signal: str, ctx: VisitorContext, language: str) -> Fact:
    referral = ctx.referral
    domain = referral.domain
    if signal == "campaign":
        if referral.campaign is None:
            return Fact(signal, None, "URL", _(language, "The link you followed carried no campaign tag."))
        text = _(language, "The link you followed belongs to the campaign “{campaign}”.").format(
            campaign=referral.campaign
        )
        return Fact(signal, referral.campaign, "URL", text)
    if signal == "referrer_domain":
        if domain is None:
            return Fact(signal, None, "Referer", _(language, "Your browser did not say which site sent you."))
        return Fact(signal, domain, "Referer", _(language, "You came from a link on {domain}.").format(domain=domain))
    category = referral.category
    if domain is None:
        messages = {
            "search": _(language, "You came from a search engine."),
            "social": _(language, "You came from a link shared on social media or in a message."),
            "email": _(language, "You came from a link in an email."),
            "other": _(language, "You came from a link on another site."),
        }
    else:
        messages = {
            "search": _(language, "You came from a search engine ({domain})."),
            "social": _(language, "You came from a link shared on social media or in a message ({domain})."),
            "email": _(language, "You came from a link in an email ({domain})."),
            "other": _(language, "You came from a link on {domain}."),
        }
    messages["campaign"] = _(language, "You followed a link from a campaign.")
    messages["internal"] = _(language, "You came from another page of this site.")
    messages["direct"] = _(language, "You came here directly, not from a link on another site.")
    source = "URL" if category == "campaign" else "Referer"
    return Fact(signal, category, source, messages[category].format(domain=domain))


def _device_fact(ctx: VisitorContext, language: str) -> Fact:
    device = ctx.device
    messages = {
        "mobile": _(language, "You are using a phone."),
        "tablet": _(language, "You are using a tablet."),
        "desktop": _(language, "You are using a computer."),
        "unknown": _(language, "We could not tell which kind of device you are using."),
    }
    return Fact("device", device.kind, device.source, messages[device.kind])


def _returning_fact(ctx: VisitorContext, language: str) -> Fact:
    returning = ctx.returning
    if returning is None:
        text = _(language, "This site does not remember your visits unless you agree.")
        return Fact("returning", None, None, text)
    if returning:
        text = _(language, "You have visited before; you agreed that this site may remember that.")
    else:
        text = _(language, "This is your first visit that this site remembers.")
    return Fact("returning", "yes" if returning else "no", "cookie", text)


def purpose_text(purpose: str, language: str) -> str:
    messages = {
        "reward": _(language, "Purpose: to reward or thank you."),
        "remind": _(language, "Purpose: to remind you of something relevant."),
        "recognize": _(language, "Purpose: to recognize you as a returning visitor."),
        "support": _(language, "Purpose: to help you with content that fits your situation."),
        "choose": _(language, "Purpose: to make a choice for you and save you a step."),
    }
    return messages[purpose]


def stored_text(consent: Consent, language: str, expires: str) -> str:
    """What this site keeps about the visitor, in plain words."""
    if consent.state == "granted" and consent.stored:
        return _(
            language,
            "You agreed that this site keeps one cookie, until {date}, with your choice, the date of your first visit"
            " and any correction you made.",
        ).format(date=expires)
    if consent.stored:
        return _(language, "This site keeps only your refusal, in one cookie.")
    return _(language, "Nothing about you was stored.")


def standard_reason_text(reason: str, language: str) -> str:
    messages = {
        "crawler": _(language, "You get the standard page: your browser identifies itself as a crawler."),
        "shared-link": _(
            language, "You get the standard page: you followed a shared link, so you see what everyone sees."
        ),
        "consent": _(language, "You get the standard page: this site personalizes nothing until you agree."),
    }
    return messages[reason]


def describe(data: Any, language: str) -> str:
    """A condition's data form (see rules.py `to_data`) in plain words, for the policy and the why page."""
    if "all" in data:
        return _(language, "all of: {parts}").format(parts="; ".join(describe(item, language) for item in data["all"]))
    if "any" in data:
        return _(language, "any of: {parts}").format(parts="; ".join(describe(item, language) for item in data["any"]))
    if "not" in data:
        return _(language, "not ({part})").format(part=describe(data["not"], language))
    ((key, value),) = data.items()
    values = value if isinstance(value, list) else [value]
    labels = {
        "language": _(language, "language"),
        "country": _(language, "country"),
        "region": _(language, "region"),
        "city": _(language, "city"),
        "referrer": _(language, "coming from"),
        "referrer_domain": _(language, "coming from the site"),
        "campaign": _(language, "campaign"),
        "device": _(language, "device"),
        "returning": _(language, "returning visitor"),
    }
    names = {
        "search": _(language, "a search engine"),
        "social": _(language, "social media or a message"),
        "email": _(language, "an email"),
        "campaign": _(language, "a campaign link"),
        "internal": _(language, "this site"),
        "other": _(language, "another site"),
        "direct": _(language, "nowhere (direct)"),
        "mobile": _(language, "phone"),
        "tablet": _(language, "tablet"),
        "desktop": _(language, "computer"),
        True: _(language, "yes"),
        False: _(language, "no"),
    }
    shown = []
    for item in values:
        if key == "language":
            shown.append(language_name(item, language))
        elif key == "country":
            shown.append(country_name(item, language))
        else:
            shown.append(names.get(item, str(item)))
    return _(language, "{label}: {values}").format(label=labels[key], values=_(language, " or ").join(shown))
