"""A trivial page handler for the benchmarks (`crawl --handler bench.crawler.title_handler:title`):
one item per page with its URL and <title>, nothing followed beyond the crawler's own links."""

from __future__ import annotations

import re

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)


def title(page):  # noqa: ANN001, ANN201 - the handler contract: Page in, items out
    """The page's title as an item."""
    found = _TITLE.search(page.text)
    return {"url": page.url, "title": found.group(1).strip() if found else None}
