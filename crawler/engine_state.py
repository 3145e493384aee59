"""The engine's state side, as a mixin of the crawl (`_Crawl` in engine.py): URLs leased from the
crawl state into memory, newly found URLs queued at once, and the group commits that make results
durable (every sink flushed, then one transaction).

A mixin for the same reason as engine_hosts.py: these methods share the crawl's frontier, results
and task group with the dispatcher; a file of their own keeps engine.py about the dispatch loop.
"""

from __future__ import annotations

import time
from typing import Any

from crawler.admission import Link
from crawler.state import Lease

LEASE_SECONDS = 3600.0  # one process owns its leases; a resumed crawl returns them all at once


class StateSide:
    """Leases, queueing at once, and group commits for `_Crawl` (see the module docstring)."""

    # set by _Crawl.__init__ / run(); listed for readers and type checkers
    config: Any
    state: Any

    def _start_flush(self) -> None:
        """Commit in the background: the dispatcher keeps sending while SQLite works."""
        self._flush_pending = True
        self.tg.create_task(self._background_flush())

    def _start_refill(self, room: int) -> None:
        """Commit, then lease up to *room* URLs, in the background: the dispatcher keeps sending
        what memory holds meanwhile (awaited in the loop, a worker's refill waiting for the
        other workers' commits stopped its sends for up to a quarter second, in a scratch run's
        timeline)."""
        self._refill_pending = True
        self.tg.create_task(self._background_refill(room))

    async def _background_refill(self, room: int) -> None:
        try:
            await self._flush()
            if self._db_due:
                await self._lease(room)
        finally:
            self._refill_pending = False
            self._wake.set()

    async def _lease(self, room: int) -> None:
        async with self._flush_lock:  # one transaction at a time on the state's connection
            leases = await self.state.lease_due(room, time.time(), LEASE_SECONDS)
        if len(leases) < room:
            self._db_due = False
        for lease in leases:
            self._route(lease)

    def _take_fresh(self) -> None:
        """Queue newly found URLs in memory at once while the window has room (they are stored
        as leased with this result's commit); the rest wait in the state for a lease."""
        fresh, self.admission.fresh = self.admission.fresh, []
        room = self.config.window - len(self.frontier) - self._held_count
        for url, depth, referrer in fresh[:max(room, 0)]:
            self._direct.append(url)
            self._route(Lease(url, depth, referrer, 0))
        if len(fresh) > room:
            self._spilled = True

    def _move_up(self, url: str, depth: int, referrer: str) -> None:
        """A waiting URL was found at a smaller depth: if it is queued in memory, requeue it."""
        lease = self._leases.get(url)
        if lease is not None:
            self._leases[url] = Lease(url, depth, referrer, lease.attempts)
            self.frontier.push(url, depth)

    async def _flush(self) -> None:
        """Make records durable (`--out` flushed), then commit their state in one transaction."""
        async with self._flush_lock:
            if not self._results and not self._direct and not self._sitemap_links:
                return
            found, self._sitemap_links = self._sitemap_links, []
            lastmods, self._lastmods = self._lastmods, []
            batch, self._results = self._results, []
            direct, self._direct = self._direct, []
            spilled, self._spilled = self._spilled, False
            for sink in self.sinks:
                sink.flush()
            try:
                await self._commit(batch, direct, found, lastmods)
            except BaseException:
                self._sitemap_links[:0] = found
                self._lastmods[:0] = lastmods
                # Cancelled (Ctrl-C) or failed mid-commit: keep the batch for the final flush.
                # Recording is idempotent, so a commit that did land is harmless to repeat.
                self._results[:0] = batch
                self._direct[:0] = direct
                self._spilled |= spilled
                raise
            if spilled:
                self._db_due = True

    async def _commit(self, batch: list[Any], direct: list[str], found: list[Link],
                      lastmods: list[tuple[str, str]]) -> None:
        """Store a batch of results, the URLs queued from them and sitemap entries."""
        if found or lastmods:  # first: URLs queued from them are leased just below
            await self.state.add_sitemap_entries(found, lastmods)
        await self.state.record_results(batch, direct, time.time() + LEASE_SECONDS)

    async def _background_flush(self) -> None:
        try:
            await self._flush()
        finally:
            self._flush_pending = False
            self._wake.set()
