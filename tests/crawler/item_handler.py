"""A page handler for the crawler's subprocess tests: one item per page, naming it."""

from __future__ import annotations


def item(page):
    """Yield {"url": page.url}."""
    yield {"url": page.url}
