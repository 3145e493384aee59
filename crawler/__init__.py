"""fanmill crawler: a polite, resumable asyncio crawler. Built so far: its pure core (URLs, scope,
robots decisions, politeness timing, frontier, link extraction); the fetcher, state, engine and CLI come next."""

from crawler.errors import CrawlError, FetchError, InvalidURL
from crawler.frontier import Busy, Empty, Frontier, Pushed, Ready, Wait
from crawler.links import Links, extract_links
from crawler.politeness import HostSlot, HostSlots
from crawler.robots import RobotsRules
from crawler.scope import Scope
from crawler.urls import Origin, normalize_url, origin_of

__all__ = [
    "Busy",
    "CrawlError",
    "Empty",
    "extract_links",
    "FetchError",
    "Frontier",
    "HostSlot",
    "HostSlots",
    "InvalidURL",
    "Links",
    "normalize_url",
    "Origin",
    "origin_of",
    "Pushed",
    "Ready",
    "RobotsRules",
    "Scope",
    "Wait",
]
