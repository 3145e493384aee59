"""fanmill crawler: a polite, resumable asyncio crawler.

`await crawl(seeds, CrawlConfig(...))` runs a crawl and returns a `CrawlSummary`; the `crawl` command
(crawler/cli.py) wraps it. The pure core (URLs, scope, robots decisions, politeness timing, frontier,
link extraction) and the I/O edge (fetcher, robots.txt fetching, crawl state) are public for reuse.
"""

from crawler.config import CrawlConfig
from crawler.engine import crawl
from crawler.errors import (
    BadResponse,
    ConnectFailed,
    CrawlError,
    FetchError,
    FetchTimeout,
    InvalidURL,
    OutputError,
    StateError,
)
from crawler.fetcher import Fetcher, FetchResult
from crawler.frontier import Busy, Empty, Frontier, Pushed, Ready, Wait
from crawler.links import Links, extract_links
from crawler.politeness import HostSlot, HostSlots
from crawler.records import CrawlRecord, CrawlSummary
from crawler.robots import RobotsRules
from crawler.robots_fetch import RobotsCache
from crawler.scope import Scope
from crawler.state import CrawlState, Lease
from crawler.urls import Origin, normalize_url, origin_of

__all__ = [
    "BadResponse",
    "Busy",
    "ConnectFailed",
    "crawl",
    "CrawlConfig",
    "CrawlError",
    "CrawlRecord",
    "CrawlState",
    "CrawlSummary",
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
    "OutputError",
    "Pushed",
    "Ready",
    "RobotsCache",
    "RobotsRules",
    "Scope",
    "StateError",
    "Wait",
]
