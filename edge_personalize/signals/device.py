"""The visitor's device class (mobile, tablet, desktop) from client hints and the User-Agent."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import user_agents

__all__ = ["Device", "DeviceClass", "classify_device"]

DeviceClass = Literal["mobile", "tablet", "desktop", "unknown"]

# Real User-Agents stay under ~300 characters; the rest of a longer one only costs regex time.
MAX_USER_AGENT_LENGTH = 512
CACHE_SIZE = 4096

# Crawlers and link-preview fetchers that ua-parser does not file as "Spider": they index or
# show the page to others, so they get the standard page. Command-line clients (curl, HTTP
# libraries) are not crawlers and are treated like any visitor. "Cubot" is a phone maker.
_AUTOMATED = re.compile(
    r"(?<!cu)bot\b|crawl|spider|slurp|facebookexternalhit|facebookcatalog|google-inspectiontool|"
    r"googleother|headlesschrome|lighthouse|phantomjs|scrapy|feedfetcher|embedly|^whatsapp/|"
    r"skypeuripreview|vkshare",
    re.IGNORECASE,
)
# Browsers that name themselves in a Mac UA; iPad Safari in its default desktop mode names none.
_MAC_BROWSER_TOKENS = re.compile(r"Chrome/|Chromium/|CriOS/|Firefox/|FxiOS/|Edg/|EdgiOS/|OPR/|Vivaldi/|YaBrowser/")


@dataclass(frozen=True, slots=True)
class Device:
    kind: DeviceClass
    is_bot: bool
    source: Literal["client hints", "user agent", "none"]


_NONE = Device("unknown", is_bot=False, source="none")


class _DigestCache:
    """A bounded LRU of parsed User-Agents keyed by a digest, so raw User-Agents are not kept in memory."""

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._entries: OrderedDict[bytes, tuple[DeviceClass, bool]] = OrderedDict()
        # Sync apps run under a thread pool; the LRU bookkeeping is not atomic on its own.
        self._lock = threading.Lock()

    def get(self, key: bytes) -> tuple[DeviceClass, bool] | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: bytes, value: tuple[DeviceClass, bool]) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_cache = _DigestCache(CACHE_SIZE)


def _parse(user_agent: str) -> tuple[DeviceClass, bool]:
    if _AUTOMATED.search(user_agent):
        return "unknown", True
    parsed = user_agents.parse(user_agent)
    if parsed.is_bot:
        return "unknown", True
    # Firefox for Android names the form factor itself ("Android 13; Tablet;"), which ua-parser
    # files as a phone browser.
    if parsed.is_tablet or (parsed.os.family == "Android" and "; Tablet;" in user_agent):
        return "tablet", False
    if parsed.is_mobile:
        return "mobile", False
    if "Macintosh" in user_agent and "Safari/" in user_agent and not _MAC_BROWSER_TOKENS.search(user_agent):
        # iPadOS Safari sends exactly this UA by default: calling it desktop would be wrong for
        # every iPad, so the honest answer is "don't know".
        return "unknown", False
    if parsed.is_pc:
        return "desktop", False
    return "unknown", False


def _user_agent_facts(user_agent: str) -> tuple[DeviceClass, bool]:
    key = hashlib.blake2b(user_agent.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    facts = _cache.get(key)
    if facts is None:
        facts = _parse(user_agent)
        _cache.put(key, facts)
    return facts


def classify_device(user_agent: str | None, ch_ua_mobile: str | None = None) -> Device:
    """The device class for a User-Agent and an optional Sec-CH-UA-Mobile header; crawlers are bots."""
    if user_agent is None:
        return _NONE
    user_agent = user_agent[:MAX_USER_AGENT_LENGTH].strip()
    if not user_agent:
        return _NONE
    kind, is_bot = _user_agent_facts(user_agent)
    if is_bot:
        return Device("unknown", is_bot=True, source="user agent")
    # Sec-CH-UA-Mobile is a structured-field boolean; anything but ?1 / ?0 is ignored.
    hint = (ch_ua_mobile or "").strip()
    if hint == "?1":
        return Device("mobile", is_bot=False, source="client hints")
    if hint == "?0":
        # Not a phone: the UA may still know a tablet (Android tablets send ?0), else a desktop.
        return Device("tablet" if kind == "tablet" else "desktop", is_bot=False, source="client hints")
    return Device(kind, is_bot=False, source="user agent")
