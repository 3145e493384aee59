"""fanmill crawler: a polite, resumable asyncio crawler.

`await crawl(seeds, CrawlConfig(...))` runs a crawl and returns a `CrawlSummary`; the `crawl` command
(crawler/cli.py) wraps it. The pure core (URLs, scope, robots decisions, politeness timing, frontier,
link extraction) and the I/O edge (fetcher, robots.txt fetching, crawl state) are public for reuse.
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
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

# Loaded on first use (PEP 562): `python -m crawler` imports this package, and a `--workers`
# parent, which only starts and waits for its workers, must not pay for the engine's imports
# (~0.2 s before the first worker can start).
_WHERE = {
    "BadResponse": "crawler.errors",
    "Busy": "crawler.frontier",
    "ConnectFailed": "crawler.errors",
    "crawl": "crawler.engine",
    "CrawlConfig": "crawler.config",
    "CrawlError": "crawler.errors",
    "CrawlRecord": "crawler.records",
    "CrawlState": "crawler.state",
    "CrawlSummary": "crawler.records",
    "Empty": "crawler.frontier",
    "extract_links": "crawler.links",
    "Fetcher": "crawler.fetcher",
    "FetchError": "crawler.errors",
    "FetchResult": "crawler.fetcher",
    "FetchTimeout": "crawler.errors",
    "Frontier": "crawler.frontier",
    "HostSlot": "crawler.politeness",
    "HostSlots": "crawler.politeness",
    "InvalidURL": "crawler.errors",
    "Lease": "crawler.state",
    "Links": "crawler.links",
    "normalize_url": "crawler.urls",
    "Origin": "crawler.urls",
    "origin_of": "crawler.urls",
    "OutputError": "crawler.errors",
    "Pushed": "crawler.frontier",
    "Ready": "crawler.frontier",
    "RobotsCache": "crawler.robots_fetch",
    "RobotsRules": "crawler.robots",
    "Scope": "crawler.scope",
    "StateError": "crawler.errors",
    "Wait": "crawler.frontier",
}

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


def __getattr__(name: str) -> _Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'crawler' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
