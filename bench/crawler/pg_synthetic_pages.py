"""The synthetic pages of bench/crawler/pg_workload.py's workers: the frontier's URLs, results, links.

Results: 97% fetched with a ~450-byte JSON record like CrawlRecord.as_dict() and 10 links (9 to
URLs already known, picked at random among the initial frontier, 1 new URL on a random host), 2%
failed (no response, no links), 1% retryable (next try in 10 minutes, no record); digests for half
the pages.
"""

from __future__ import annotations

import random
from typing import Any


def host_url(host: int, page: int) -> str:
    """The initial frontier's URLs: 100 per host, normalized (with a path)."""
    return f"http://h{host}.example/p{page}"


class SyntheticPages:
    """The synthetic pages: records, links, digests."""

    def __init__(self, index: int, seed: int, hosts: int, per_host: int) -> None:
        self.rng = random.Random(seed * 1000 + index)
        self.index = index
        self.hosts = hosts
        self.per_host = per_host
        self.new = 0

    def results(self, leases: list[Any], now: float) -> tuple[list[Any], list[Any], int]:
        """The results of *leases* fetched at *now*: (results, contents, links made)."""
        rng = self.rng
        results, contents, links_total = [], [], 0
        for lease in leases:
            roll = rng.random()
            if roll < 0.01:
                results.append((lease.url, "retryable", None, [], now + 600.0))
                continue
            depth = lease.depth + 1
            if roll < 0.03:
                record = _record(lease, None, "ConnectError: connection refused", 0, now, rng)
                results.append((lease.url, "failed", record, [], None))
                continue
            links = [(host_url(rng.randrange(self.hosts), rng.randrange(self.per_host)), depth,
                      lease.url) for _ in range(9)]
            self.new += 1
            links.append((f"http://h{rng.randrange(self.hosts)}.example/n{self.index}x{self.new}",
                          depth, lease.url))
            links_total += len(links)
            record = _record(lease, 200, None, len(links), now, rng)
            if rng.random() < 0.5:
                contents.append((lease.url, record["content_hash"], record["simhash"]))
            results.append((lease.url, "fetched", record, links, None))
        return results, contents, links_total


def _record(lease: Any, status: int | None, error: str | None, links: int, now: float,
            rng: random.Random) -> dict[str, Any]:
    ok = status is not None
    return {
        "url": lease.url, "status": status, "depth": lease.depth, "referrer": lease.referrer,
        "content_length": rng.randrange(2_000, 60_000) if ok else 0,
        "content_hash": f"{rng.getrandbits(256):064x}" if ok else None,
        "fetch_time": now, "error": error,
        "content_type": "text/html; charset=utf-8" if ok else None,
        "redirect_to": None, "duplicate_of": None, "links": links, "near_duplicate_of": None,
        "simhash": f"{rng.getrandbits(64):016x}" if ok else None,
        "etag": f'"{rng.getrandbits(32):08x}-{rng.getrandbits(24):06x}"' if ok else None,
        "last_modified": "Sat, 28 Nov 2026 10:00:00 GMT" if ok else None,
    }
