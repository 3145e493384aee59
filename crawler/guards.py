"""Pure admission checks for a discovered URL: trap guards and private-address refusal."""

from __future__ import annotations

import ipaddress

from crawler.config import CrawlConfig
from crawler.urls import Origin


def trap_reason(url: str, config: CrawlConfig) -> str | None:
    """Why *url* (normalized) looks like a crawler trap, or None."""
    if len(url) > config.max_url_length:
        return "url too long"
    path = url.partition("://")[2].partition("/")[2].partition("?")[0]
    segments = [s for s in path.split("/") if s]
    if len(segments) > config.max_path_segments:
        return "path too deep"
    if len(segments) > config.max_segment_repeats:
        counts: dict[str, int] = {}
        for seg in segments:
            counts[seg] = counts.get(seg, 0) + 1
            if counts[seg] > config.max_segment_repeats:
                return "repeated path segment"
    return None


def is_private_address(host: str) -> bool:
    """True if *host* is an IP literal in a private, loopback, link-local, multicast, reserved or
    unspecified range (names are checked on their resolved address by the fetcher's resolver)."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return (
        addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
        or addr.is_reserved or addr.is_unspecified
    )


def refuse_private(origin: Origin, seed_hosts: frozenset[str], allow_private: bool) -> bool:
    """True if a request to *origin* must not be sent (private target, not a seed host)."""
    return not allow_private and origin.host not in seed_hosts and is_private_address(origin.host)
