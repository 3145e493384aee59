"""Link extraction from HTML (pure, html.parser): <a href> and <area href>, honouring <base href>,
rel=nofollow and <meta name=robots content=nofollow|noindex>. Malformed HTML never raises: the parser
is lenient and anything it cannot make sense of is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

from crawler.errors import InvalidURL
from crawler.urls import normalize_url

MAX_LINKS = 10_000


@dataclass(frozen=True, slots=True)
class Links:
    """What a page says about its links: normalized absolute URLs, in document order, deduplicated."""

    urls: tuple[str, ...]
    nofollow: bool  # <meta name=robots content=nofollow>: follow none of the page's links
    noindex: bool  # <meta name=robots content=noindex>
    truncated: bool  # more than max_links links: the rest were ignored


class _LinkParser(HTMLParser):
    def __init__(self, base_url: str, max_links: int) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base_url
        self.max_links = max_links
        self.hrefs: list[str] = []
        self.nofollow = self.noindex = self.truncated = False
        self.base_seen = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "base" and "href" in a and not self.base_seen:
            self.base_seen = True  # only the first <base> counts (HTML standard)
            try:
                self.base = normalize_url(a["href"], self.base)
            except InvalidURL:
                pass
        elif tag == "meta" and a.get("name", "").lower() == "robots":
            content = {t.strip() for t in a.get("content", "").lower().split(",")}
            self.nofollow |= bool(content & {"nofollow", "none"})
            self.noindex |= bool(content & {"noindex", "none"})
        elif tag in ("a", "area") and "href" in a:
            if "nofollow" in a.get("rel", "").lower().split():
                return
            if len(self.hrefs) >= self.max_links:
                self.truncated = True
                return
            self.hrefs.append(a["href"])


def extract_links(html: str, base_url: str, max_links: int = MAX_LINKS) -> Links:
    """Return the followable links of *html* served at *base_url* (non-http(s) links dropped)."""
    parser = _LinkParser(base_url, max_links)
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; this guards the rare assertion on broken markup
        pass
    if parser.nofollow:
        return Links((), True, parser.noindex, parser.truncated)
    seen: dict[str, None] = {}
    for href in parser.hrefs:
        try:
            seen.setdefault(normalize_url(href, parser.base))
        except InvalidURL:
            continue
    return Links(tuple(seen), False, parser.noindex, parser.truncated)
