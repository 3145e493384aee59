"""Exceptions of the crawler package.

    CrawlError          base of every error the crawler raises on purpose
    ├── InvalidURL      a string that is not an absolute http(s) URL the crawler can fetch (also a ValueError)
    └── FetchError      a fetch failed (subclasses for timeouts, refused connections, oversized bodies
                        arrive with the fetcher)
"""

from __future__ import annotations


class CrawlError(Exception):
    """Base class of every error raised on purpose by the crawler package."""


class InvalidURL(CrawlError, ValueError):
    """The string is not an absolute http(s) URL the crawler can fetch; the message says why."""


class FetchError(CrawlError):
    """A fetch failed; the message names the URL and the cause."""
