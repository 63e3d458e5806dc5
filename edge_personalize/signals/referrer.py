"""Where the visit came from: a referrer category, a registrable domain and a campaign name.

The Referer URL is reduced to its host at once; its path and query never leave this module.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote_plus, urlsplit

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

ReferrerCategory = Literal["search", "social", "email", "campaign", "internal", "other", "direct"]


@dataclass(frozen=True, slots=True)
class Referral:
    category: ReferrerCategory
    domain: str | None
    campaign: str | None


# Hosts and registrable domains, matched on the referrer host and each of its parents up to the
# registrable domain, so the most specific entry wins: mail.yahoo.com is email, search.yahoo.com is
# search, and the yahoo.com portal itself is "other". Google's many country domains are a rule below.
_SEARCH = frozenset(
    {
        "bing.com",
        "duckduckgo.com",
        "search.yahoo.com",
        "search.yahoo.co.jp",
        "search.aol.com",
        "yandex.ru",
        "yandex.com",
        "yandex.com.tr",
        "yandex.by",
        "yandex.kz",
        "ya.ru",
        "baidu.com",
        "ecosia.org",
        "qwant.com",
        "startpage.com",
        "search.brave.com",
        "kagi.com",
        "search.naver.com",
        "search.seznam.cz",
        "sogou.com",
        "so.com",
        "ask.com",
        "mojeek.com",
        "yep.com",
        "swisscows.com",
        "metager.org",
        "metager.de",
    }
)
_SOCIAL = frozenset(
    {
        "facebook.com",
        "fb.com",
        "fb.me",
        "messenger.com",
        "instagram.com",
        "threads.net",
        "threads.com",
        "t.co",
        "twitter.com",
        "x.com",
        "bsky.app",
        "linkedin.com",
        "lnkd.in",
        "reddit.com",
        "redd.it",
        "news.ycombinator.com",
        "pinterest.com",
        "pin.it",
        "tiktok.com",
        "youtube.com",
        "youtu.be",
        "tumblr.com",
        "snapchat.com",
        "vk.com",
        "weibo.com",
        "quora.com",
        "wa.me",
        "whatsapp.com",
        "t.me",
        "telegram.me",
        "telegram.org",
        "discord.com",
        "discord.gg",
        "discordapp.com",
        "slack.com",
        "teams.microsoft.com",
        "teams.live.com",
    }
)
_EMAIL = frozenset(
    {
        "outlook.live.com",
        "outlook.office.com",
        "outlook.office365.com",
        "outlook.com",
        "gmx.net",
        "gmx.de",
        "gmx.at",
        "gmx.ch",
        "gmx.com",
        "web.de",
        "fastmail.com",
        "proton.me",
        "tuta.com",
        "tutanota.com",
        "e.mail.ru",
    }
)
# Webmail on a provider's own domain (mail.example.org, webmail.example.net) is named like this.
_WEBMAIL_LABELS = frozenset({"mail", "webmail", "email"})

# Android apps send "android-app://<package>/" instead of a web page.
_ANDROID_APPS: dict[str, tuple[ReferrerCategory, str]] = {
    "com.google.android.gm": ("email", "google.com"),
    "com.google.android.googlequicksearchbox": ("search", "google.com"),
    "com.microsoft.office.outlook": ("email", "outlook.com"),
    "com.facebook.katana": ("social", "facebook.com"),
    "com.facebook.orca": ("social", "messenger.com"),
    "com.instagram.android": ("social", "instagram.com"),
    "com.linkedin.android": ("social", "linkedin.com"),
    "com.reddit.frontpage": ("social", "reddit.com"),
    "com.slack": ("social", "slack.com"),
    "com.whatsapp": ("social", "whatsapp.com"),
    "org.telegram.messenger": ("social", "telegram.org"),
}

# Campaign tags on the landing URL. Ad click ids count as a (nameless) campaign because only a paid
# click carries them. fbclid does not: Facebook adds it to every outbound link, shared posts included,
# and those visits are social.
_UTM_KEYS = frozenset({"utm_source", "utm_medium", "utm_campaign"})
_CLICK_IDS = frozenset({"gclid", "msclkid"})
# The email media of GA4's "Email" default channel group.
_EMAIL_MEDIA = frozenset({"email", "e-mail", "e_mail", "e mail"})

_MAX_REFERER = 2048  # browsers send at most a few KB; the host is near the start anyway
_MAX_CAMPAIGN = 64
_CAMPAIGN_DROP = re.compile(r"[^A-Za-z0-9 _.\-]")
_LABEL = re.compile(r"(?!-)[a-z0-9_\-]{1,63}(?<!-)")
# google.com, google.de, google.co.uk, google.com.au, google.cat: Google's own search domains, and
# not google.github.io or the like, whose registrable domain also starts with "google.".
_GOOGLE_SUFFIX = re.compile(r"com|cat|(?:com?\.)?[a-z]{2}")


@functools.cache
def _suffix_list() -> PublicSuffixList:
    # Loading the bundled list takes tens of milliseconds: done on first use, once per process.
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def registrable_domain(host: str) -> str | None:
    """The registrable domain of a host ("www.google.co.uk" -> "google.co.uk"), in ASCII; None for IPs and junk."""
    name = _normalise_host(host)
    if name is None:
        return None
    domain = _suffix_list().privatesuffix(name)
    return domain if isinstance(domain, str) else None


def classify_referral(referer: str | None, site_host: str | None, query_string: str) -> Referral:
    """Classify a visit from its Referer header, the site's own host and the landing URL's query string."""
    domain, category = _from_referer(referer, site_host)
    tagged, medium, campaign = _campaign_tags(query_string)
    if tagged:
        return Referral("email" if medium in _EMAIL_MEDIA else "campaign", domain, campaign)
    return Referral(category, domain, None)


def _from_referer(referer: str | None, site_host: str | None) -> tuple[str | None, ReferrerCategory]:
    if referer is None or not referer.strip():
        return None, "direct"
    text = referer.strip()[:_MAX_REFERER]
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        return None, "other"
    try:
        parts = urlsplit(text)
        scheme, raw_host = parts.scheme.lower(), parts.hostname
    except ValueError:
        return None, "other"
    if scheme == "android-app":
        app = _ANDROID_APPS.get(parts.netloc.lower())
        return (app[1], app[0]) if app else (None, "other")
    if scheme not in ("http", "https") or not raw_host:
        return None, "other"
    return _classify_host(raw_host, _hostname(site_host) if site_host else None)


# Keyed by host names only (never a path or query), so the cache holds no more than the result does.
@functools.lru_cache(maxsize=4096)
def _classify_host(raw_host: str, site: str | None) -> tuple[str | None, ReferrerCategory]:
    host = _normalise_host(raw_host)
    domain = registrable_domain(host) if host else None
    if site is not None:
        site_domain = registrable_domain(site)
        # Hosts without a registrable domain (localhost, an IP address) are internal only to themselves.
        if raw_host.rstrip(".") == site or (domain is not None and domain == site_domain):
            return domain, "internal"
    if host is None or domain is None:
        return None, "other"
    return domain, _category_of(host, domain)


def _hostname(site_host: str) -> str | None:
    try:
        name = urlsplit("//" + site_host.strip()[:_MAX_REFERER]).hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


def _category_of(host: str, domain: str) -> ReferrerCategory:
    if host.split(".", 1)[0] in _WEBMAIL_LABELS:
        return "email"
    labels = host.split(".")
    stop = domain.count(".") + 1
    for start in range(len(labels) - stop + 1):
        candidate = ".".join(labels[start:])
        if candidate in _EMAIL:
            return "email"
        if candidate in _SEARCH:
            return "search"
        if candidate in _SOCIAL:
            return "social"
    # Only the search front door counts; docs.google.com or play.google.com are not searches.
    first, _, suffix = domain.partition(".")
    if first == "google" and host in (domain, "www." + domain) and _GOOGLE_SUFFIX.fullmatch(suffix):
        return "search"
    return "other"


def _normalise_host(host: str) -> str | None:
    name = host.strip().rstrip(".").lower()
    if not name or len(name) > 253:
        return None
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    # A host ending in a number is an IPv4 address in one of the forms browsers accept (2130706433, 0x7f.1).
    last = labels[-1]
    if last.isdigit() or last.startswith("0x"):
        return None
    return name


def _campaign_tags(query_string: str) -> tuple[bool, str | None, str | None]:
    tagged = False
    medium: str | None = None
    campaign: str | None = None
    for pair in query_string.split("&"):
        raw_key, _, raw_value = pair.partition("=")
        key = raw_key.lower()
        if key not in _UTM_KEYS and key not in _CLICK_IDS:
            continue
        value = unquote_plus(raw_value, errors="replace").strip()
        if not value:
            continue
        tagged = True
        if key == "utm_medium":
            medium = value.lower()
        elif key == "utm_campaign":
            reduced = _CAMPAIGN_DROP.sub("", value).strip()[:_MAX_CAMPAIGN].strip()
            campaign = reduced or None
    return tagged, medium, campaign
