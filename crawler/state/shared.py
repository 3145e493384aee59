"""The shared crawl state: the protocol many workers follow to share one crawl, whatever the backend.

Workers lease hosts, not URLs (StormCrawler and Nutch route every URL of a host to one fetcher;
Frontera partitions its queue by host). A host row carries its owner, a lease expiry, a lease token
bumped at every claim, and its politeness state: the next allowed send time (wall clock), the
Crawl-delay and the cached robots.txt. One worker owns a host at a time, so politeness stays local
to it; the next send time is written back at every renewal and at release, so whoever owns the host
next keeps the gap.

- `claim_hosts` marks up to k due hosts leased in one statement, never a destructive pop (a
  scrapy-redis pop loses a dead spider's requests for good, rmax/scrapy-redis#177). An expired
  lease is reclaimed by the same statement; the taker then counts the host as sent to just now (the
  dead owner's last send is unknown) and gets its URLs that were in flight back as due.
- `lease_urls` hands out due URLs of hosts the caller still owns (checked in the statement).
- `record_results` writes a batch in one transaction, but only the results of hosts whose lease
  token still matches: a worker that stalled past its expiry cannot record over the new owner's
  work; the hosts it lost are returned so it drops them.
- `renew` (the heartbeat) extends the caller's leases and stores their politeness state; `release`
  gives hosts back with their in-flight URLs due again and their next due time recomputed.
- URLs are rows unique by normalized URL; inserts are batched and ignore known URLs (a waiting URL
  found at a smaller depth moves up). Content digests go to an append-only table every worker reads
  from where it last stopped, so exact and near duplicates are found across workers.

Times are wall-clock seconds (`time.time()`): workers on different machines share them, so their
clocks must be synchronized (NTP) to well under the crawl delay.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Protocol

from crawler.state.sqlite import Final, Lease

Result = tuple[str, Final, "dict[str, Any] | str | None", "list[tuple[str, int, str | None]]",
               "float | None"]


@dataclass(slots=True)
class HostLease:
    """A host the worker owns until `lease_until` (wall time), under `token`."""

    origin: str
    token: int
    lease_until: float
    next_send: float  # wall time before which no request may be sent
    crawl_delay: float | None
    robots: tuple[int | None, bytes | None, float, str | None] | None  # (status, body, at, reason)


@dataclass(slots=True)
class HostUpdate:
    """What a worker writes back for a host it owns: its politeness state."""

    origin: str
    token: int
    next_send: float
    crawl_delay: float | None = None
    robots: tuple[int | None, bytes | None, float, str | None] | None = None


@dataclass(slots=True)
class Outstanding:
    """What is left of the crawl: URLs due or in flight anywhere, and the earliest retry."""

    active: int  # 1 if a URL is waiting or in flight anywhere, else 0
    next_retry: float | None
    hosts_due_free: int = 0  # 1 if a due host is free (nobody owns it, or its lease expired)


@dataclass(slots=True)
class Recorded:
    """What `record_results` did: the hosts found lost (their results were refused)."""

    lost: set[str] = field(default_factory=set)
    refused: int = 0
    leased: list[Lease] = field(default_factory=list)  # of the URLs asked to lease at once


def tally(kept: list[Result]) -> tuple[int, int]:
    """(pages, errors) a batch of stored results adds to its worker's counts."""
    return (sum(1 for r in kept if r[1] != "retryable"), sum(1 for r in kept if r[1] == "failed"))


def origin_key(url: str) -> str:
    """The origin of a normalized URL as stored ("scheme://host[:port]", equal to str(Origin))."""
    return url[:url.index("/", 8)]


def per_host_share(limit: int, hosts: int) -> int:
    """URLs one host gets at most in a lease of *limit* over *hosts* owned hosts."""
    return max(16, -(-limit // max(1, hosts)))


def worker_id(index: int | None = None) -> str:
    """A worker id unique across machines and runs: host name, process id and index."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"{host}-{os.getpid()}" + ("" if index is None else f"-{index}")


def is_postgres_url(text: str | None) -> bool:
    """True for a PostgreSQL connection URL (`postgresql://...` or `postgres://...`)."""
    return bool(text) and text.split("://", 1)[0].lower() in ("postgresql", "postgres")


class SharedState(Protocol):
    """The operations every backend provides (one contract test suite runs against each)."""

    worker: str

    async def join(self, now: float) -> None:
        """Register this worker (seen by `status`)."""

    async def add_discovered(self, found: list[tuple[str, int, str | None]]) -> None:
        """Add (url, depth, referrer) rows; known URLs keep their status."""

    async def claim_hosts(self, k: int, now: float, lease: float, delay: float) -> list[HostLease]:
        """Lease up to *k* hosts with due URLs that nobody owns (or whose lease expired)."""

    async def share(self, now: float, lease: float, owned: int) -> int:
        """This worker's fair share of the hosts with work (hosts over live workers)."""

    async def lease_urls(self, origins: list[str], limit: int, now: float) -> list[Lease]:
        """Lease up to *limit* due URLs of *origins* that this worker still owns."""

    async def record_results(self, results: list[Result], tokens: dict[str, int],
                             contents: list[tuple[str, str | None, str | None]],
                             now: float, lease: list[str] = ()) -> Recorded:
        """Store results of owned hosts (token checked), their links and content digests; then
        lease the URLs of *lease* (links of owned hosts) that are still waiting."""

    async def renew(self, updates: list[HostUpdate], now: float, lease: float) -> set[str]:
        """Extend the leases of *updates* and store their politeness; return the hosts lost."""

    async def release(self, updates: list[HostUpdate], now: float) -> None:
        """Give hosts back: URLs in flight due again, next due time recomputed."""

    async def contents_since(self, cursor: int) -> tuple[list[tuple[str, str | None, str | None]], int]:
        """Content digests (url, hash, simhash) added after *cursor*, and the new cursor."""

    async def redirects(self) -> list[tuple[str, str]]:
        """(url, target) of recorded redirects (a new worker rebuilds hop counts)."""

    async def outstanding(self, now: float) -> Outstanding:
        """What is left to do in the whole crawl."""

    async def leave(self, now: float) -> None:
        """Mark this worker gone (its hosts are released first by the caller)."""

    async def forget(self, worker: str, now: float) -> None:
        """*worker* died (its supervisor saw it exit): its host leases end now, so other workers
        take its hosts over at their next claim instead of after the lease expiry."""

    async def status(self, now: float) -> dict[str, Any]:
        """Progress across workers: URLs per status, hosts leased, workers seen, errors."""

    async def close(self) -> None:
        """Close the connection."""


async def open_shared(target: str, worker: str) -> SharedState:
    """Open the shared state at *target*: a PostgreSQL URL, or a SQLite file path."""
    if is_postgres_url(target):
        from crawler.state.shared_pg import PgShared

        return await PgShared.open(target, worker)
    from crawler.state.shared_sqlite import SqliteShared

    return await SqliteShared.open(target, worker)
