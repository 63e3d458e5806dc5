from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from edge_personalize.signals.referrer import Referral, ReferrerCategory, classify_referral, registrable_domain

SITE = "shop.example"

REFERRERS: list[tuple[str, ReferrerCategory, str | None]] = [
    # search
    ("https://www.google.com/", "search", "google.com"),
    ("https://www.google.co.uk/", "search", "google.co.uk"),
    ("https://www.google.de/search?q=laufschuhe&hl=de", "search", "google.de"),
    ("https://google.de/", "search", "google.de"),
    ("https://www.google.com.au/", "search", "google.com.au"),
    ("https://www.bing.com/search?q=running+shoes&form=QBLH", "search", "bing.com"),
    ("https://duckduckgo.com/", "search", "duckduckgo.com"),
    ("https://search.yahoo.com/search?p=running+shoes", "search", "yahoo.com"),
    ("https://uk.search.yahoo.com/", "search", "yahoo.com"),
    ("https://www.ecosia.org/search?q=shoes", "search", "ecosia.org"),
    ("https://yandex.ru/search/?text=x", "search", "yandex.ru"),
    ("https://www.baidu.com/link?url=abc", "search", "baidu.com"),
    ("https://www.qwant.com/?q=x", "search", "qwant.com"),
    ("https://www.startpage.com/", "search", "startpage.com"),
    ("https://search.brave.com/search?q=x", "search", "brave.com"),
    ("https://kagi.com/search?q=x", "search", "kagi.com"),
    ("android-app://com.google.android.googlequicksearchbox/", "search", "google.com"),
    # email
    ("https://mail.google.com/mail/u/0/", "email", "google.com"),
    ("https://outlook.live.com/mail/0/", "email", "live.com"),
    ("https://outlook.office.com/mail/inbox", "email", "office.com"),
    ("https://mail.yahoo.com/d/folders/1", "email", "yahoo.com"),
    ("https://mail.proton.me/u/0/inbox", "email", "proton.me"),
    ("https://webmail.example.org/?_task=mail", "email", "example.org"),
    ("https://www.gmx.net/", "email", "gmx.net"),
    ("https://web.de/", "email", "web.de"),
    ("android-app://com.google.android.gm/", "email", "google.com"),
    # social and messaging
    ("https://www.linkedin.com/feed/", "social", "linkedin.com"),
    ("https://lnkd.in/xyz", "social", "lnkd.in"),
    ("https://news.ycombinator.com/item?id=1", "social", "ycombinator.com"),
    ("https://t.co/AbC123", "social", "t.co"),
    ("https://x.com/someone/status/1", "social", "x.com"),
    ("https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example%2F&h=AT0", "social", "facebook.com"),
    ("https://lm.facebook.com/", "social", "facebook.com"),
    ("https://www.reddit.com/r/running/comments/abc/", "social", "reddit.com"),
    ("https://out.reddit.com/t3_abc?url=x", "social", "reddit.com"),
    ("https://www.youtube.com/", "social", "youtube.com"),
    ("https://bsky.app/profile/someone", "social", "bsky.app"),
    ("https://web.whatsapp.com/", "social", "whatsapp.com"),
    ("https://t.me/channel/1", "social", "t.me"),
    ("https://app.slack.com/client/T0/C0", "social", "slack.com"),
    ("https://discord.com/channels/1/2", "social", "discord.com"),
    ("android-app://com.linkedin.android/", "social", "linkedin.com"),
    # other
    ("https://www.yahoo.com/", "other", "yahoo.com"),
    ("https://docs.google.com/document/d/abc/edit", "other", "google.com"),
    ("https://google.github.io/styleguide/", "other", "google.github.io"),
    ("https://en.wikipedia.org/wiki/Shoe", "other", "wikipedia.org"),
    ("https://blog.someone.co.uk/post?id=7", "other", "someone.co.uk"),
    ("android-app://com.example.unknown/", "other", None),
]


@pytest.mark.parametrize(("referer", "category", "domain"), REFERRERS)
def test_referrer_table(referer: str, category: ReferrerCategory, domain: str | None) -> None:
    assert classify_referral(referer, SITE, "") == Referral(category, domain, None)


@pytest.mark.parametrize(
    "referer",
    [
        "https://shop.example/products/1?color=red",
        "https://www.shop.example/",
        "http://shop.example:8080/cart",
        "https://blog.shop.example/post/2",
        "https://SHOP.EXAMPLE./",
    ],
)
def test_own_site_is_internal(referer: str) -> None:
    assert classify_referral(referer, SITE, "") == Referral("internal", "shop.example", None)


def test_apex_referrer_is_internal_for_www_site() -> None:
    assert classify_referral("https://shop.example/", "www.shop.example:443", "").category == "internal"


def test_same_suffix_is_not_same_site() -> None:
    # Different owners under one public suffix.
    referral = classify_referral("https://alice.github.io/", "bob.github.io", "")
    assert referral == Referral("other", "alice.github.io", None)


def test_own_webmail_subdomain_is_still_internal() -> None:
    assert classify_referral("https://mail.shop.example/", SITE, "").category == "internal"


def test_localhost_and_ip_sites_are_internal_only_to_themselves() -> None:
    assert classify_referral("http://localhost:8000/a", "localhost:8000", "").category == "internal"
    assert classify_referral("http://127.0.0.1:8000/a", "127.0.0.1:8000", "").category == "internal"
    assert classify_referral("http://[::1]:8000/a", "[::1]:8000", "").category == "internal"
    assert classify_referral("http://127.0.0.2/a", "127.0.0.1", "") == Referral("other", None, None)


def test_without_site_host_nothing_is_internal() -> None:
    assert classify_referral("https://shop.example/", None, "").category == "other"


@pytest.mark.parametrize("referer", [None, "", "   "])
def test_no_referer_is_direct(referer: str | None) -> None:
    assert classify_referral(referer, SITE, "") == Referral("direct", None, None)


# --- campaign tags --------------------------------------------------------------------------


def test_utm_tags_make_a_campaign() -> None:
    query = "utm_source=newsletter_partner&utm_medium=banner&utm_campaign=spring_sale-2025"
    assert classify_referral(None, SITE, query) == Referral("campaign", None, "spring_sale-2025")


def test_campaign_keeps_the_referrer_domain() -> None:
    query = "utm_source=facebook&utm_medium=paid_social&utm_campaign=launch"
    referral = classify_referral("https://l.facebook.com/", SITE, query)
    assert referral == Referral("campaign", "facebook.com", "launch")


def test_email_medium_makes_email() -> None:
    query = "utm_source=newsletter&utm_medium=Email&utm_campaign=Weekly+Digest+%2342"
    assert classify_referral(None, SITE, query) == Referral("email", None, "Weekly Digest 42")


def test_any_single_utm_tag_counts() -> None:
    assert classify_referral(None, SITE, "utm_source=partner").category == "campaign"
    assert classify_referral(None, SITE, "utm_source=partner").campaign is None


def test_empty_utm_values_do_not_count() -> None:
    assert classify_referral(None, SITE, "utm_source=&utm_campaign=") == Referral("direct", None, None)


def test_ad_click_id_is_a_campaign() -> None:
    referral = classify_referral("https://www.google.com/", SITE, "gclid=Cj0KCQiA")
    assert referral == Referral("campaign", "google.com", None)


def test_fbclid_alone_stays_social() -> None:
    referral = classify_referral("https://l.facebook.com/", SITE, "fbclid=IwAR3xyz")
    assert referral == Referral("social", "facebook.com", None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("summer%3Cscript%3Ealert(1)%3C%2Fscript%3E", "summerscriptalert1script"),
        ("a" * 200, "a" * 64),
        ("%E2%80%AE%F0%9F%94%A5hot", "hot"),
        ("%00%01%02", None),
        ("%%%", None),
        ("  spaced  out  ", "spaced  out"),
    ],
)
def test_campaign_name_is_reduced(raw: str, expected: str | None) -> None:
    assert classify_referral(None, SITE, f"utm_campaign={raw}").campaign == expected


def test_other_query_parameters_are_ignored() -> None:
    assert classify_referral(None, SITE, "q=shoes&page=2&ref=abc") == Referral("direct", None, None)


# --- hostile input --------------------------------------------------------------------------

HOSTILE = [
    "x" * 65536,
    "https://" + "a" * 65536 + ".com/",
    "https://" + "a." * 200 + "com/",
    "https://example.com/" + "p" * 65536,
    "https://exa\x00mple.com/",
    "https://example.com/\x00",
    "\x00",
    "https://\xff\xfe.com/",
    "https://[::1",
    "https://[not-an-ip]/",
    "http://user:pass@",
    "https:///path-only",
    "https://-bad-.com/",
    "https://a..b.com/",
    "https://%65vil.com/",
    "https://evil.com<script>/",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "chrome-extension://abcdef/page.html",
    "about:blank",
    "ftp://files.example.com/",
    "http://192.168.1.10/admin",
    "http://[2001:db8::1]/",
    "http://2130706433/",
    "http://0x7f.0.0.1/",
    "http://10.1/",
    "//no-scheme.example/",
    "www.google.com",
    "android-app://",
    "android-app://" + "x" * 65536,
    "https://xn--/",
    "https://" + "\u2603" * 100 + ".com/",
]


@pytest.mark.parametrize("referer", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_referer_never_raises(referer: str) -> None:
    referral = classify_referral(referer, SITE, "")
    assert referral.category == "other"
    assert referral.campaign is None
    if referral.domain is not None:
        assert len(referral.domain) <= 253
        assert referral.domain.isascii()
        assert "/" not in referral.domain


@pytest.mark.parametrize(
    "query",
    [
        "utm_campaign=" + "%" * 65536,
        "&" * 65536,
        "utm_campaign=%FF%FE%00",
        "utm_campaign=\x00",
        "=" * 1000,
        "utm_medium=email&" * 5000,
    ],
)
def test_hostile_query_never_raises(query: str) -> None:
    referral = classify_referral(None, SITE, query)
    assert referral.category in ("campaign", "email", "direct")


@pytest.mark.parametrize("site_host", ["", "[::1", "\x00", "a" * 65536, ":::", "shop.example:notaport"])
def test_hostile_site_host_never_raises(site_host: str) -> None:
    assert classify_referral("https://www.google.com/", site_host, "").category == "search"


# --- privacy --------------------------------------------------------------------------------


@pytest.mark.parametrize("referer", [r for r, _, _ in REFERRERS if r.startswith("http")])
def test_result_never_holds_the_referrer_path_or_query(referer: str) -> None:
    parts = urlsplit(referer)
    referral = classify_referral(referer, SITE, "")
    values = " ".join(str(v) for v in (referral.domain, referral.campaign))
    for fragment in [parts.path, parts.query, parts.fragment]:
        if fragment not in ("", "/"):
            assert fragment not in values
            assert fragment not in repr(referral)
    assert "://" not in repr(referral)


# --- registrable_domain ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("www.google.co.uk", "google.co.uk"),
        ("news.ycombinator.com", "ycombinator.com"),
        ("WWW.Example.COM.", "example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("user.github.io", "user.github.io"),
        ("co.uk", None),
        ("com", None),
        ("localhost", None),
        ("192.168.0.1", None),
        ("::1", None),
        ("", None),
        ("a..b", None),
        ("exa mple.com", None),
        ("x" * 300 + ".com", None),
    ],
)
def test_registrable_domain(host: str, expected: str | None) -> None:
    assert registrable_domain(host) == expected
