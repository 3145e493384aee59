"""Fetch robots.txt once per origin (I/O) and turn the outcome into RobotsRules.

Concurrent requests for one origin share one in-flight fetch (scrapy's middleware keeps a pending
Deferred per netloc for the same reason). Redirects are followed up to MAX_REDIRECTS (RFC 9309
§2.3.1.2: at least five); a redirect loop or a longer chain counts as unreachable. Answers are
cached with a TTL (§2.4: 24 hours is the ceiling a crawler should keep); an unreachable robots.txt
is retried sooner, since §2.3.1.4 asks for "complete disallow" only while it stays unreachable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urljoin

from crawler.errors import BadResponse, FetchError
from crawler.fetcher import FetchResult
from crawler.retry import TRANSIENT_STATUSES
from crawler.robots import MAX_ROBOTS_BYTES, RobotsRules
from crawler.urls import Origin

MAX_REDIRECTS = 5
TTL_SECONDS = 24 * 3600.0
UNREACHABLE_RETRY_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class RobotsEntry:
    """The rules of one origin and when they stop being fresh."""

    rules: RobotsRules
    expires_at: float
    fetches: int  # HTTP requests it took (1 + redirects)


class _Attempt(NamedTuple):
    status: int | None  # None: unreachable, for *reason*
    body: bytes | None
    reason: str | None
    retry_after: str | None
    sent: int  # requests it took
    transient: bool  # worth trying again (no connection, timeout, 429, 5xx)


class RobotsCache:
    """Robots rules per origin, fetched on first need, once, even under concurrency."""

    def __init__(self, fetch: Callable[[str], Awaitable[FetchResult]], user_agent: str,
                 clock: Callable[[], float], *, store: MutableMapping[str, Any] | None = None,
                 wall: Callable[[], float] = time.time, retries: int = 0,
                 retry_wait: Callable[[int, str | None], float] | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        """*fetch* sends one GET (no redirects followed); *clock* gives the current time.

        *store* (e.g. a `cache.PersistentLRU`) keeps (status, body, wall time, reason) per origin
        across runs, so a resumed crawl reuses robots.txt answers still fresh by *wall* time.
        A transient failure (no connection, timeout, 429, 5xx) is tried again up to *retries*
        times, *retry_wait(attempt, Retry-After header)* seconds apart, as pages are.
        """
        self._retries = retries
        self._retry_wait = retry_wait or (lambda attempt, _after: float(2 ** attempt))
        self._sleep = sleep
        self._store = store
        self._wall = wall
        self._fetch = fetch
        self.user_agent = user_agent
        self._clock = clock
        self._entries: dict[Origin, RobotsEntry] = {}
        self._pending: dict[Origin, asyncio.Task[RobotsEntry]] = {}

    async def rules_for(self, origin: Origin) -> RobotsRules:
        """Return the fresh rules of *origin*, fetching robots.txt if needed (once at a time)."""
        entry = self._entries.get(origin)
        if entry is not None and entry.expires_at > self._clock():
            return entry.rules
        task = self._pending.get(origin)
        if task is None:
            task = asyncio.ensure_future(self._load(origin))
            self._pending[origin] = task
            task.add_done_callback(lambda _t: self._pending.pop(origin, None))
        return (await asyncio.shield(task)).rules

    def _from_store(self, origin: Origin) -> RobotsEntry | None:
        if self._store is None:
            return None
        try:
            status, body, fetched_at, *rest = self._store.get(str(origin), (None, None, None))
        except Exception:  # an unreadable entry is a miss: robots.txt is fetched again
            return None
        if fetched_at is None:
            return None
        reason = rest[0] if rest else None
        rules = RobotsRules.from_response(status, body, self.user_agent, reason)
        ttl = UNREACHABLE_RETRY_SECONDS if rules.outcome == "disallow-all" else TTL_SECONDS
        left = fetched_at + ttl - self._wall()
        if left <= 0:
            return None
        entry = RobotsEntry(rules, self._clock() + left, 0)
        self._entries[origin] = entry
        return entry

    async def _load(self, origin: Origin) -> RobotsEntry:
        stored = self._from_store(origin)
        if stored is not None:
            return stored
        fetches = 0
        for attempt in range(self._retries + 1):
            got = await self._fetch_following(origin)
            fetches += got.sent
            if not got.transient or attempt == self._retries:
                break
            await self._sleep(self._retry_wait(attempt, got.retry_after))
        status, body, reason = got.status, got.body, got.reason
        rules = RobotsRules.from_response(status, body, self.user_agent, reason)
        ttl = UNREACHABLE_RETRY_SECONDS if rules.outcome == "disallow-all" else TTL_SECONDS
        entry = RobotsEntry(rules, self._clock() + ttl, fetches)
        self._entries[origin] = entry
        if self._store is not None:
            self._store[str(origin)] = (
                status, None if body is None else body[:MAX_ROBOTS_BYTES], self._wall(), reason)
        return entry

    async def _fetch_following(self, origin: Origin) -> _Attempt:
        """One attempt at robots.txt, redirects followed."""
        url = f"{origin}/robots.txt"
        seen = {url}
        for hop in range(1, MAX_REDIRECTS + 2):
            try:
                result = await self._fetch(url)
            except FetchError as exc:  # no connection or a timeout is worth another try
                return _Attempt(None, None, exc.reason, None, hop,
                                not isinstance(exc, BadResponse))
            if result.status in (301, 302, 303, 307, 308) and result.location:
                url = urljoin(url, result.location)
                if url in seen:
                    return _Attempt(None, None, "redirect loop", None, hop, False)
                seen.add(url)
                continue
            return _Attempt(result.status, result.body, None, result.retry_after, hop,
                            result.status in TRANSIENT_STATUSES)
        return _Attempt(None, None, f"more than {MAX_REDIRECTS} redirects", None,
                        MAX_REDIRECTS + 1, False)

    def entry(self, origin: Origin) -> RobotsEntry | None:
        """The cached entry of *origin*, fresh or not (for stats and tests)."""
        return self._entries.get(origin)
