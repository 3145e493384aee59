"""Orchestration: leases URLs from the crawl state into the frontier, fetches them politely under
one `asyncio.TaskGroup`, and records results with their links.

A URL's life: discovered (a link, a redirect target or a seed) -> checked against scope, private
addresses and trap guards -> added to the state with the result that found it -> leased into the
in-memory window -> held until its origin's robots.txt is known -> pushed into the frontier if
allowed -> handed out by `Frontier.next_ready` with its host's send time already reserved ->
fetched -> handed to the page handler (if any) -> handed to every sink (`--out`, `--warc`,
`--items`), flushed, and only then marked fetched in the state.

Redirects are never followed inside the HTTP client: a 3xx is a record, and its target is a newly
discovered URL (same depth, one more hop) that goes through every check above like any link.
robots.txt requests take their host's politeness slot too, so the robots.txt fetch and the first
page request are `delay` apart, and the Crawl-delay it announces applies from that fetch on.
The robots.txt, sitemap and handler side lives in engine_hosts.py, the leases and commits in
engine_state.py (mixins of `_Crawl`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from cache import PersistentLRU
from crawler.admission import Admission, Link
from crawler.config import CrawlConfig
from crawler.engine_hosts import HostGate
from crawler.engine_state import StateSide
from crawler.errors import BadResponse, FetchError, InvalidURL, OutputError, StateError
from crawler.fetcher import Fetcher, FetchResult
from crawler.frontier import Empty, Frontier, Ready, Wait
from crawler.page import Handler
from crawler.politeness import HostSlots
from crawler.recorder import PageRecorder, Validators, conditional_headers, keep_validators
from crawler.records import CrawlRecord, CrawlSummary
from crawler.retry import TRANSIENT_STATUSES, backoff, parse_retry_after
from crawler.robots_fetch import RobotsCache
from crawler.scope import Scope
from crawler.sinks import ItemsSink, JsonlSink, Sink, WarcSink, warc_info
from crawler.sitemaps import SitemapWalk
from crawler.state import CrawlState, Lease
from crawler.urls import Origin, normalize_url, origin_of

__all__ = ["crawl"]

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.5


async def crawl(
    seeds: list[str], config: CrawlConfig, *,
    on_record: Callable[[CrawlRecord], None] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    on_page: Handler | None = None,
) -> CrawlSummary:
    """Crawl from *seeds* under *config*; return the summary. Raise `InvalidURL` for a bad seed,
    `StateError` if the state file cannot be used. *on_page(page)* is called with each fetched
    `Page` and may return or yield URLs to follow and dicts (items, written to `config.items`).

    With `config.worker` set, or a PostgreSQL URL as `config.state`, this is one worker of a
    crawl other workers may share (engine_worker.py)."""
    from crawler.state import is_postgres_url

    if config.worker or is_postgres_url(config.state):
        from dataclasses import replace

        from crawler.engine_worker import _WorkerCrawl
        from crawler.state.shared import worker_id

        if not config.worker:
            config = replace(config, worker=worker_id())
        return await _WorkerCrawl(seeds, config, on_record, on_progress, on_page).run()
    return await _Crawl(seeds, config, on_record, on_progress, on_page).run()


class _Crawl(HostGate, StateSide):
    def __init__(self, seeds: list[str], config: CrawlConfig,
                 on_record: Callable[[CrawlRecord], None] | None,
                 on_progress: Callable[[dict[str, Any]], None] | None,
                 on_page: Handler | None = None) -> None:
        self.config = config
        self.seeds = [normalize_url(s) for s in seeds]
        if not self.seeds:
            raise InvalidURL("no seed URL given")
        self.scope = Scope.from_seeds(self.seeds, config.allow_hosts)
        self.seed_hosts = frozenset(origin_of(s).host for s in self.seeds)
        self.on_record = on_record
        self.on_progress = on_progress
        self.summary = CrawlSummary()
        self.frontier = Frontier(HostSlots(config.delay, config.per_host), config.window * 2)
        self.admission = Admission(config, self.scope, self.seed_hosts, self.summary,
                                   self._move_up)
        self.recorder = PageRecorder(config, self.admission, self.summary)
        self.on_page = on_page
        self._leases: dict[str, Lease] = {}  # leased, not yet fetched
        self._held: dict[Origin, list[Lease]] = {}  # waiting for their origin's robots.txt
        self._held_count = 0  # leases in _held (summed on every turn, it cost O(hosts))
        self._results: list[tuple[str, Any, dict[str, Any] | None, list[Link], float | None]] = []
        self._records: list[CrawlRecord] = []
        self._db_due = True  # the state may hold URLs due now
        self._next_retry: float | None = None  # wall time of the earliest retry
        self._inflight = 0
        self._handling = 0  # pages in their handler (fetched, not yet recorded)
        self._sitemap_tasks = 0
        self._sitemap_walk = SitemapWalk()
        self._sitemap_origins: set[Origin] = set()
        self._sitemap_links: list[Link] = []  # found in sitemaps, stored with the next commit
        self._lastmods: list[tuple[str, str]] = []
        self._robots_tasks = 0
        self._dispatched = 0
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()  # held by every state transaction during the crawl
        self._flush_pending = False  # a background commit is running or about to
        self._refill_pending = False  # a background refill (commit, then lease) is running
        self._direct: list[str] = []  # new URLs queued in memory at once, leased at the next commit
        self._spilled = False  # new URLs left in the state for want of room in memory
        self._rand = random.Random()
        self._validators: dict[str, Validators] = {}  # --recrawl: the last answer of each URL
        self._last_progress = 0.0
        self._last_refill = 0.0

    async def run(self) -> CrawlSummary:
        started = time.monotonic()
        tmpdir = None if self.config.state else tempfile.mkdtemp(prefix="fanmill-crawl-")
        path = self.config.state or os.path.join(tmpdir or "", "state.db")
        try:
            await self._open_state(path)
            self.sinks: list[Sink] = []
            robots_store = None
            try:
                self.sinks = self._open_sinks()
                robots_store = self._robots_store()
                await self._start()
                async with Fetcher(user_agent=self.config.user_agent, max_body=self.config.max_body,
                                   timeout=self.config.timeout,
                                   connections=self.config.concurrency + 8,
                                   per_host_connections=self.config.per_host + 1,
                                   trusted_hosts=None if self.config.allow_private
                                   else self.seed_hosts,
                                   capture=self.warc is not None) as fetcher:
                    self.fetcher = fetcher
                    loop = asyncio.get_running_loop()
                    self.robots = RobotsCache(self._polite_get, self.config.user_agent, loop.time,
                                              store=robots_store, retries=self.config.max_retries,
                                              retry_wait=self._retry_wait)
                    try:
                        async with asyncio.TaskGroup() as tg:
                            self.tg = tg
                            await self._dispatch()
                    except BaseExceptionGroup as group:
                        # the first failure is the cause (the rest were cancelled because of it);
                        # callers get a plain exception they can catch, not a group
                        raise group.exceptions[0] from group
            finally:
                try:
                    await self._flush()  # runs on Ctrl-C too: what was fetched stays recorded
                finally:
                    try:
                        for sink in self.sinks:
                            sink.close()
                    finally:
                        if robots_store is not None and hasattr(robots_store, "close"):
                            robots_store.close()
                        await self._close_state()
        finally:
            if tmpdir:
                shutil.rmtree(tmpdir, ignore_errors=True)
            self.summary.seconds = time.monotonic() - started
        return self.summary

    async def _open_state(self, path: str) -> None:
        try:
            self.state = await CrawlState.open(path)
        except Exception as exc:  # cache.CorruptStoreError, sqlite3/OS errors
            raise StateError(f"cannot open crawl state {path}: {exc}") from exc

    async def _close_state(self) -> None:
        await self.state.close()

    def _robots_store(self) -> Any:
        """Where robots.txt answers are kept for a resume: beside the state file."""
        if not self.config.state:
            return None
        try:
            return PersistentLRU(self.config.state + ".robots", capacity=100_000)
        except Exception as exc:  # cache.CacheError and OS errors
            raise StateError(f"cannot open robots cache: {exc}") from exc

    def _open_sinks(self) -> list[Sink]:
        """The outputs the config asks for, in the order they are flushed."""
        cfg = self.config
        sinks: list[Sink] = []
        self.jsonl = JsonlSink(cfg.out) if cfg.out else None
        self.warc = None
        try:
            if self.jsonl is not None:
                sinks.append(self.jsonl)
            if cfg.warc:
                try:
                    self.warc = WarcSink(cfg.warc, cfg.warc_max_size, warc_info(cfg),
                                         cfg.warc_prefix)
                except (OSError, ValueError) as exc:  # WarcDamagedError is a ValueError
                    raise OutputError(f"cannot use --warc {cfg.warc}: {exc}") from exc
                sinks.append(self.warc)
            if cfg.items:
                sinks.append(ItemsSink(cfg.items))
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
        return sinks

    async def _start(self) -> None:
        known = await self.state.known()
        if known:
            self.summary.resumed = True
            # The killed run's last sends are unknown: count every host as sent to just now, so
            # the first request after a quick restart still keeps the gap (and Crawl-delay).
            self.frontier.slots.resumed_at = asyncio.get_running_loop().time()
            await self.state.return_expired(float("inf"))
            self._next_retry = await self.state.next_retry_at()
            # content seen before the restart still makes later pages (near) duplicates
            for url, content_hash, fingerprint in await self.state.seen_content():
                if content_hash:
                    self.recorder.hashes.setdefault(bytes.fromhex(content_hash)[:16], url)
                if fingerprint:
                    self.recorder.simhashes.add(int(fingerprint, 16), url)
        if known and self.config.recrawl is not None:
            self._validators = await self.state.requeue_fetched_before(
                time.time() - self.config.recrawl)
        for url, (depth, _status) in known.items():
            self.admission.restore(url, depth)
        if known:
            self.admission.restore_hops(await self.state.redirects())
        new = [(s, 0, None) for s in self.seeds if s not in self.admission.known]
        for url, depth, _ in new:
            self.admission.known[url] = depth
        await self.state.add_discovered(new)

    # -- the dispatcher -------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        while True:
            self._wake.clear()
            self._report_progress(loop.time())
            stopping = cfg.max_pages is not None and self._dispatched >= cfg.max_pages
            in_memory = len(self.frontier) + self._held_count
            self._check_due()
            # New URLs go to memory at once while the window has room; the state is leased from
            # only for what spilled over (or a resume, or retries due). Refill when the window is
            # half empty, but not on every turn: each refill is two transactions, and a hungry
            # frontier (< 4 per worker) is the only reason to hurry.
            now = loop.time()
            if (not stopping and not self._refill_pending and in_memory < cfg.window // 2
                    and (self._db_due or self._spilled)
                    and (self._hungry(in_memory) or now - self._last_refill > self.REFILL_EVERY)):
                self._last_refill = now
                self._start_refill(cfg.window - in_memory)
                continue
            if (self._results or self._direct or self._sitemap_links) and not self._flush_pending:
                # group commit: whatever finished while the last commit ran goes in the next,
                # so a result waits for one commit at most (that bounds refetches after a kill)
                self._start_flush()
            timeout: float | None = None
            if not stopping and self._inflight < cfg.concurrency:
                step = self.frontier.next_ready(loop.time())
                if isinstance(step, Ready):
                    self._inflight += 1
                    self._dispatched += 1
                    self.tg.create_task(self._fetch_page(step))
                    continue
                if isinstance(step, Wait):
                    timeout = step.seconds
                elif isinstance(step, Empty) and self._idle():
                    timeout = await self._idle_wait()
                    if timeout is None:
                        return
            elif (stopping and self._inflight == 0 and self._robots_tasks == 0
                  and self._handling == 0 and self._sitemap_tasks == 0 and not self._sitemap_links):
                return
            if self.on_progress is not None:
                timeout = PROGRESS_EVERY if timeout is None else min(timeout, PROGRESS_EVERY)
            # A timer that sets the event, not asyncio.timeout(): on Python 3.11, a Ctrl-C that
            # cancels this task just before a timeout of 0 is entered comes back out of
            # asyncio.timeout as TimeoutError (the two cancellations merge into one), and the
            # crawl went on as if nothing had been asked.
            timer = None if timeout is None else loop.call_later(timeout, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    REFILL_EVERY = 0.05  # seconds between two refills of a frontier that is not short of URLs

    def _hungry(self, in_memory: int) -> bool:
        """Whether the frontier is short enough of URLs to refill now rather than in 50 ms."""
        return in_memory < 4 * self.config.concurrency

    def _check_due(self) -> None:
        """Mark the state as holding due URLs when a retry comes due."""
        if self._next_retry is not None and time.time() >= self._next_retry:
            self._db_due, self._next_retry = True, None

    async def _idle_wait(self) -> float | None:
        """Nothing to do here: seconds until there may be (a retry), or None when finished."""
        if self._next_retry is None:
            return None
        return max(0.0, self._next_retry - time.time())

    def _idle(self) -> bool:
        return (self._inflight == 0 and self._robots_tasks == 0 and not self._held
                and self._handling == 0 and self._sitemap_tasks == 0 and not self._sitemap_links
                and not self._results and not self._direct and not self._db_due
                and not self._flush_pending and not self._refill_pending)

    async def _fetch_page(self, ready: Ready) -> None:
        loop = asyncio.get_running_loop()
        result: FetchResult | None = None
        error: FetchError | None = None
        previous = self._validators.get(ready.url)
        try:
            result = await self.fetcher.fetch(
                ready.url, None if previous is None else conditional_headers(previous))
        except FetchError as exc:
            error = exc
        finally:
            self.frontier.slots.answered(
                ready.origin, result.answered_at if result is not None else loop.time())
            if result is not None and (result.status == 429 or 200 <= result.status < 300):
                self.frontier.slots.throttle(ready.origin, overloaded=result.status == 429)
            retry_after = None
            if result is not None and result.status in (429, 503):
                retry_after = parse_retry_after(result.retry_after, time.time())
                if retry_after is not None:
                    capped = min(retry_after, self.config.max_retry_after)
                    self.frontier.slots.defer(ready.origin, loop.time() + capped)
            self.frontier.done(ready.origin)
            self._inflight -= 1
            self._wake.set()
        lease = self._leases.pop(ready.url, None) or Lease(ready.url, ready.depth, None, 0)
        transient = (error is not None and not isinstance(error, BadResponse)) or (
            result is not None and result.status in TRANSIENT_STATUSES)
        if transient and lease.attempts < self.config.max_retries:
            wait = backoff(lease.attempts, self.config.retry_base, 60.0, self._rand.random)
            if retry_after is not None:
                wait = max(wait, min(retry_after, self.config.max_retry_after))
            next_try = time.time() + wait
            self._results.append((ready.url, "retryable", None, [], next_try))
            self.frontier.forget(ready.url)
            self._next_retry = next_try if self._next_retry is None else min(self._next_retry,
                                                                              next_try)
            self._dispatched -= 1
            self.summary.retries += 1
            return
        links: list[Link] = []
        recorded = self.recorder.record(ready.url, lease, result, error, links)
        record = recorded.record
        if previous is not None:
            self._validators.pop(ready.url, None)
            self.summary.recrawled += 1
            if result is not None and result.status == 304:
                self.summary.unchanged += 1
                result.revisit_of = previous.fetched_at
                keep_validators(record, previous)
        items: list[str] = []
        if self.on_page is not None and result is not None:
            self._handling += 1
            try:
                items = await self._handle(result, recorded, lease, links)
            finally:
                self._handling -= 1
                self._wake.set()
        self.summary.add(record)
        stored = self._store_record(result, record, items)
        final = "failed" if record.status is None or record.status >= 500 else "fetched"
        self._results.append((ready.url, final, stored, links, None))
        self._take_fresh()

    def _report_progress(self, now: float) -> None:
        if self.on_progress is None or now - self._last_progress < PROGRESS_EVERY:
            return
        self._last_progress = now
        self.on_progress({
            "pages": self.summary.pages, "queued": len(self.frontier),
            "in_flight": self._inflight, "hosts": len(self.frontier.slots.slots),
            "errors": self.summary.failed,
        })
