"""fanmill crawler: a polite, resumable asyncio crawler. So far: URL normalization and its errors."""

from crawler.errors import CrawlError, FetchError, InvalidURL
from crawler.urls import Origin, normalize_url, origin_of

__all__ = ["CrawlError", "FetchError", "InvalidURL", "normalize_url", "Origin", "origin_of"]
