"""`--sitemaps` (I/O): fetch one origin's sitemaps through its politeness slot and hand their URLs
to the crawl. The parsing and the limits are crawler/sitemaps.py's; this file only walks.

Where sitemaps come from: the origin's robots.txt `Sitemap:` lines (RFC 9309 §2.2.4 leaves them to
the sitemaps protocol), else `/sitemap.xml` when robots.txt names none (what Scrapy's SitemapSpider
users write by hand, and what Google tries). A sitemap on another origin is fetched only when that
origin is in scope. A hostile sitemap costs one error line in the summary, never the crawl.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from crawler.errors import FetchError, InvalidURL
from crawler.fetcher import FetchResult
from crawler.robots import RobotsRules
from crawler.sitemaps import SitemapError, SitemapWalk, decode_sitemap_body, parse_sitemap
from crawler.urls import Origin, normalize_url

Entry = tuple[str, str | None, str]  # (normalized URL, lastmod, the sitemap that listed it)


async def load_sitemaps(
    origin: Origin, rules: RobotsRules, walk: SitemapWalk, *,
    get: Callable[[str], Awaitable[FetchResult]], in_scope: Callable[[str], bool],
    on_entries: Callable[[list[Entry]], None], on_error: Callable[[str], None],
) -> int:
    """Fetch *origin*'s sitemaps (indexes followed once, loops cut); give each file's entries to
    *on_entries* and each problem to *on_error*; return the number of sitemap files read."""
    named = [] if rules.parser is None else list(rules.parser.sitemaps)
    fallback = not named
    candidates = named or [f"{origin}/sitemap.xml"]
    urls = []
    for raw in candidates:
        try:
            url = normalize_url(raw, f"{origin}/robots.txt")
        except InvalidURL as exc:
            on_error(f"{origin}/robots.txt: bad Sitemap line {raw!r}: {exc}")
            continue
        if in_scope(url):  # a sitemap elsewhere speaks for another site
            urls.append(url)
    queue, err = walk.start(str(origin), urls)
    if err:
        on_error(err)
    files = 0
    while queue:
        url, depth = queue.pop(0)
        if not rules.allowed(url):
            if not fallback:
                on_error(f"{url}: sitemap disallowed by robots.txt")
            continue
        try:
            result = await get(url)
        except FetchError as exc:
            on_error(f"{url}: sitemap not fetched ({exc.reason})")
            continue
        if result.status != 200:
            if not (fallback and result.status == 404):  # no /sitemap.xml is no news
                on_error(f"{url}: sitemap answered HTTP {result.status}")
            continue
        if result.truncated:
            on_error(f"{url}: sitemap larger than --max-body: not read")
            continue
        try:
            sitemap = parse_sitemap(decode_sitemap_body(
                result.body, url=url, content_type=result.content_type), url=url)
        except SitemapError as exc:
            on_error(str(exc))
            continue
        files += 1
        if sitemap.truncated:
            on_error(f"{url}: more than {len(sitemap.entries)} URLs: the rest ignored")
        if sitemap.kind == "index":
            children = []
            for entry in sitemap.entries:
                try:
                    child = normalize_url(entry.loc)
                except InvalidURL:
                    continue
                if in_scope(child):
                    children.append(child)
            more, err = walk.found_index(str(origin), depth, children)
            if err:
                on_error(err)
            queue.extend(more)
            continue
        found = []
        for entry in sitemap.entries:
            try:
                found.append((normalize_url(entry.loc), entry.lastmod, url))
            except InvalidURL:
                continue
        on_entries(found)
    return files
