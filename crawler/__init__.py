"""fanmill crawler: a polite, resumable asyncio crawler. Built so far: its pure core (URLs, scope,
robots decisions, politeness timing); the fetcher, state, engine and CLI come next."""

from crawler.errors import CrawlError, FetchError, InvalidURL
from crawler.politeness import HostSlot, HostSlots
from crawler.robots import RobotsRules
from crawler.scope import Scope
from crawler.urls import Origin, normalize_url, origin_of

__all__ = [
    "CrawlError",
    "FetchError",
    "HostSlot",
    "HostSlots",
    "InvalidURL",
    "normalize_url",
    "Origin",
    "origin_of",
    "RobotsRules",
    "Scope",
]
