"""fanmill crawler: a polite, resumable asyncio crawler.

Built so far: the pure core (URLs, scope, robots decisions, politeness timing, frontier, link
extraction), the fetcher, robots.txt fetching and the crawl state; the engine and CLI come next.
"""

from crawler.errors import (
    BadResponse,
    ConnectFailed,
    CrawlError,
    FetchError,
    FetchTimeout,
    InvalidURL,
)
from crawler.fetcher import Fetcher, FetchResult
from crawler.frontier import Busy, Empty, Frontier, Pushed, Ready, Wait
from crawler.links import Links, extract_links
from crawler.politeness import HostSlot, HostSlots
from crawler.robots import RobotsRules
from crawler.robots_fetch import RobotsCache
from crawler.scope import Scope
from crawler.state import CrawlState, Lease
from crawler.urls import Origin, normalize_url, origin_of

__all__ = [
    "BadResponse",
    "Busy",
    "ConnectFailed",
    "CrawlError",
    "CrawlState",
    "Empty",
    "extract_links",
    "Fetcher",
    "FetchError",
    "FetchResult",
    "FetchTimeout",
    "Frontier",
    "HostSlot",
    "HostSlots",
    "InvalidURL",
    "Lease",
    "Links",
    "normalize_url",
    "Origin",
    "origin_of",
    "Pushed",
    "Ready",
    "RobotsCache",
    "RobotsRules",
    "Scope",
    "Wait",
]
