"""Orchestration: leases URLs from the crawl state into the frontier, fetches them politely under
one `asyncio.TaskGroup`, and records results with their links.

A URL's life: discovered (a link, a redirect target or a seed) -> checked against scope, private
addresses and trap guards -> added to the state with the result that found it -> leased into the
in-memory window -> held until its origin's robots.txt is known -> pushed into the frontier if
allowed -> handed out by `Frontier.next_ready` with its host's send time already reserved ->
fetched -> its record written to `--out`, flushed, and only then marked fetched in the state.

Redirects are never followed inside the HTTP client: a 3xx is a record, and its target is a newly
discovered URL (same depth, one more hop) that goes through every check above like any link.
robots.txt requests take their host's politeness slot too, so the robots.txt fetch and the first
page request are `delay` apart, and the Crawl-delay it announces applies from that fetch on.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from crawler.errors import BadResponse, ConnectFailed, FetchError, InvalidURL, StateError
from crawler.fetcher import Fetcher, FetchResult
from crawler.frontier import Empty, Frontier, Ready, Wait
from crawler.guards import refuse_private
from crawler.links import extract_links
from crawler.output import JsonlWriter
from crawler.politeness import HostSlots
from crawler.records import CrawlRecord, CrawlSummary
from crawler.retry import TRANSIENT_STATUSES, backoff, parse_retry_after
from crawler.robots import RobotsRules
from crawler.robots_fetch import RobotsCache
from crawler.scope import Scope
from crawler.simhash import SimHashIndex, page_words, simhash
from crawler.state import CrawlState, Lease
from crawler.urls import Origin, normalize_url, origin_of

__all__ = ["crawl"]

log = logging.getLogger(__name__)

LEASE_SECONDS = 3600.0  # one process owns its leases; a resumed crawl returns them all at once
MIN_SIMHASH_WORDS = 50
SIMHASH_TEXT = 1 << 20  # characters of a page read for its SimHash (ample for MAX_SHINGLES words)
PROGRESS_EVERY = 0.5


async def crawl(
    seeds: list[str], config: CrawlConfig, *,
    on_record: Callable[[CrawlRecord], None] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> CrawlSummary:
    """Crawl from *seeds* under *config*; return the summary. Raise `InvalidURL` for a bad seed,
    `StateError` if the state file cannot be used."""
    return await _Crawl(seeds, config, on_record, on_progress).run()


class _Crawl:
    def __init__(self, seeds: list[str], config: CrawlConfig,
                 on_record: Callable[[CrawlRecord], None] | None,
                 on_progress: Callable[[dict[str, Any]], None] | None) -> None:
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
        self._simhashes = SimHashIndex()
        self._hashes: dict[bytes, str] = {}  # body digest -> first URL with that body
        self._leases: dict[str, Lease] = {}  # leased, not yet fetched
        self._held: dict[Origin, list[Lease]] = {}  # waiting for their origin's robots.txt
        self._held_count = 0  # leases in _held (summed on every turn, it cost O(hosts))
        self._results: list[tuple[str, Any, dict[str, Any] | None, list[Link], float | None]] = []
        self._records: list[CrawlRecord] = []
        self._db_due = True  # the state may hold URLs due now
        self._next_retry: float | None = None  # wall time of the earliest retry
        self._inflight = 0
        self._robots_tasks = 0
        self._dispatched = 0
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()  # held by every state transaction during the crawl
        self._flush_pending = False  # a background commit is running or about to
        self._direct: list[str] = []  # new URLs queued in memory at once, leased at the next commit
        self._spilled = False  # new URLs left in the state for want of room in memory
        self._rand = random.Random()
        self._last_progress = 0.0
        self._last_refill = 0.0

    async def run(self) -> CrawlSummary:
        started = time.monotonic()
        tmpdir = None if self.config.state else tempfile.mkdtemp(prefix="fanmill-crawl-")
        path = self.config.state or os.path.join(tmpdir or "", "state.db")
        try:
            try:
                self.state = await CrawlState.open(path)
            except Exception as exc:  # cache.CorruptStoreError, sqlite3/OS errors
                raise StateError(f"cannot open crawl state {path}: {exc}") from exc
            self.writer = JsonlWriter(self.config.out) if self.config.out else None
            robots_store = None
            try:
                if self.config.state:  # robots.txt answers kept beside the state for a resume
                    try:
                        robots_store = PersistentLRU(self.config.state + ".robots", capacity=100_000)
                    except Exception as exc:  # cache.CacheError and OS errors
                        raise StateError(f"cannot open robots cache: {exc}") from exc
                await self._start()
                async with Fetcher(user_agent=self.config.user_agent, max_body=self.config.max_body,
                                   timeout=self.config.timeout,
                                   connections=self.config.concurrency + 8,
                                   per_host_connections=self.config.per_host + 1,
                                   trusted_hosts=None if self.config.allow_private
                                   else self.seed_hosts) as fetcher:
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
                        if self.writer is not None:
                            self.writer.close()
                    finally:
                        if robots_store is not None:
                            robots_store.close()
                        await self.state.close()
        finally:
            if tmpdir:
                shutil.rmtree(tmpdir, ignore_errors=True)
            self.summary.seconds = time.monotonic() - started
        return self.summary

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
                    self._hashes.setdefault(bytes.fromhex(content_hash)[:16], url)
                if fingerprint:
                    self._simhashes.add(int(fingerprint, 16), url)
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
            if self._next_retry is not None and time.time() >= self._next_retry:
                self._db_due, self._next_retry = True, None
            # New URLs go to memory at once while the window has room; the state is leased from
            # only for what spilled over (or a resume, or retries due). Refill when the window is
            # half empty, but not on every turn: each refill is two transactions, and a hungry
            # frontier (< 4 per worker) is the only reason to hurry.
            now = loop.time()
            if (not stopping and in_memory < cfg.window // 2 and (self._db_due or self._spilled)
                    and (in_memory < 4 * cfg.concurrency or now - self._last_refill > 0.05)):
                self._last_refill = now
                await self._flush()
                if self._db_due:
                    await self._lease(cfg.window - in_memory)
                continue
            if (self._results or self._direct) and not self._flush_pending:
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
                    if self._next_retry is None:
                        return
                    timeout = max(0.0, self._next_retry - time.time())
            elif stopping and self._inflight == 0 and self._robots_tasks == 0:
                return
            if self.on_progress is not None:
                timeout = PROGRESS_EVERY if timeout is None else min(timeout, PROGRESS_EVERY)
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _idle(self) -> bool:
        return (self._inflight == 0 and self._robots_tasks == 0 and not self._held
                and not self._results and not self._direct and not self._db_due
                and not self._flush_pending)

    def _start_flush(self) -> None:
        """Commit in the background: the dispatcher keeps sending while SQLite works."""
        self._flush_pending = True
        self.tg.create_task(self._background_flush())

    async def _lease(self, room: int) -> None:
        async with self._flush_lock:  # one transaction at a time on the state's connection
            leases = await self.state.lease_due(room, time.time(), LEASE_SECONDS)
        if len(leases) < room:
            self._db_due = False
        for lease in leases:
            self._route(lease)

    def _route(self, lease: Lease) -> None:
        """Into the frontier if its host's robots.txt is known, else held until it is."""
        origin = origin_of(lease.url)
        entry = self.robots.entry(origin)
        if (entry is not None and entry.expires_at > asyncio.get_running_loop().time()
                and origin not in self._held):
            self._admit(lease, entry.rules)
            return
        held = self._held.get(origin)
        self._held_count += 1
        if held is None:
            self._held[origin] = [lease]
            self._robots_tasks += 1
            self.tg.create_task(self._load_robots(origin))
        else:
            held.append(lease)

    def _admit(self, lease: Lease, rules: RobotsRules) -> None:
        if rules.allowed(lease.url):
            self._leases[lease.url] = lease
            self.frontier.push(lease.url, lease.depth)
        elif rules.unreachable is not None:
            # RFC 9309 §2.3.1.4: disallow while unreachable; but the user is told why, and the
            # URL counts as failed, not as denied by rules the host never served
            self.summary.add_unreachable(str(origin_of(lease.url)), rules.unreachable)
            record = CrawlRecord(lease.url, None, lease.depth, lease.referrer, 0, None,
                                 time.time(), f"robots.txt unreachable ({rules.unreachable})")
            self._results.append((lease.url, "failed", self._store_record(record), [], None))
        else:
            self.summary.robots_denied += 1
            self._results.append((lease.url, "failed", None, [], None))

    def _store_record(self, record: CrawlRecord) -> dict[str, Any] | str:
        """Write *record* to `--out` (flushed with the next commit); return what the state keeps."""
        stored = record.as_dict() if self.writer is None else self.writer.write(record)
        if self.on_record is not None:
            self.on_record(record)
        return stored

    def _retry_wait(self, attempt: int, retry_after: str | None) -> float:
        """Seconds before retry *attempt* + 1 of a transient failure: backoff, or Retry-After."""
        wait = backoff(attempt, self.config.retry_base, 60.0, self._rand.random)
        after = parse_retry_after(retry_after, time.time())
        if after is not None:
            wait = max(wait, min(after, self.config.max_retry_after))
        return wait

    async def _load_robots(self, origin: Origin) -> None:
        try:
            rules = await self.robots.rules_for(origin)
            self.frontier.slots.set_crawl_delay(origin, rules.crawl_delay)
            held = self._held.pop(origin, [])
            self._held_count -= len(held)
            for lease in held:
                self._admit(lease, rules)
        finally:
            self._robots_tasks -= 1
            self._wake.set()

    async def _polite_get(self, url: str) -> FetchResult:
        """One robots.txt request, sent through its host's politeness slot like any page."""
        try:
            origin = origin_of(normalize_url(url))
        except InvalidURL as exc:
            raise FetchError(f"{url}: {exc}") from exc
        if refuse_private(origin, self.seed_hosts, self.config.allow_private):
            raise ConnectFailed(f"{url}: refused private address")
        loop = asyncio.get_running_loop()
        slots = self.frontier.slots
        while not slots.try_acquire(origin, loop.time()):
            at = slots.ready_at(origin)
            await asyncio.sleep(0.005 if at is None else max(0.0, at - loop.time()))
        self.summary.robots_fetches += 1
        try:
            return await self.fetcher.fetch(url)
        finally:
            slots.answered(origin, loop.time())
            self.frontier.done(origin)
            self._wake.set()

    # -- one page -------------------------------------------------------------------------------

    async def _fetch_page(self, ready: Ready) -> None:
        loop = asyncio.get_running_loop()
        result: FetchResult | None = None
        error: FetchError | None = None
        try:
            result = await self.fetcher.fetch(ready.url)
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
        record = self._record(ready, lease, result, error, links)
        self.summary.add(record)
        stored = self._store_record(record)
        final = "failed" if record.status is None or record.status >= 500 else "fetched"
        self._results.append((ready.url, final, stored, links, None))
        self._take_fresh()

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

    def _record(self, ready: Ready, lease: Lease, result: FetchResult | None,
                error: FetchError | None, links: list[Link]) -> CrawlRecord:
        url, depth = ready.url, lease.depth
        if result is None:
            return CrawlRecord(url, None, depth, lease.referrer, 0, None, time.time(), str(error))
        body = result.body
        digest = hashlib.sha256(body)
        err: str | None = None
        redirect_to = duplicate_of = near = fingerprint = None
        found = 0
        if result.truncated:
            err = f"body larger than {self.config.max_body} bytes: cut off"
        status = result.status
        if 300 <= status < 400 and result.location:
            try:
                redirect_to = normalize_url(result.location, url)
            except InvalidURL as exc:
                err = f"invalid redirect target: {exc}"
            else:
                err, found = self.admission.redirect(url, redirect_to, depth, links)
        elif 200 <= status < 300 and "html" in result.content_type.lower() and err is None:
            key = digest.digest()[:16]
            duplicate_of = self._hashes.setdefault(key, url)
            if duplicate_of == url:
                duplicate_of = None
            # A duplicate's links are still extracted: relative links resolve against a different
            # base, so the same bytes can lead to different pages (the known-URL index drops the rest).
            err, found, text = self._follow_links(url, depth, body, result.content_type, links)
            if duplicate_of is None and text is not None:
                words = page_words(text[:SIMHASH_TEXT])
                # 50+ words only: on a shorter page one changed word moves the fingerprint
                # further than distance 3 anyway
                if len(words) >= MIN_SIMHASH_WORDS:
                    fp = simhash(words)
                    near, fingerprint = self._simhashes.add(fp, url), f"{fp:016x}"
        return CrawlRecord(
            url, status, depth, lease.referrer, len(body), digest.hexdigest(), time.time(), err,
            result.content_type or None, redirect_to, duplicate_of, found, near, fingerprint,
        )

    def _follow_links(self, url: str, depth: int, body: bytes, content_type: str,
                      out: list[Link]) -> tuple[str | None, int, str | None]:
        """Extract and admit the page's links: (error text, links admitted, decoded text)."""
        if b"\x00" in body[:1024]:
            return "binary body served as HTML: links not extracted", 0, None
        charset = "utf-8"
        for part in content_type.split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip("\"' ")
        err = None
        try:
            text = body.decode(charset)
        except (UnicodeDecodeError, LookupError) as exc:
            err = f"undecodable body ({exc.__class__.__name__}, {charset}): decoded with replacement"
            text = body.decode("utf-8", "replace")
        page = extract_links(text, url, self.config.max_links)
        self.summary.invalid_links += page.invalid
        if page.truncated:
            err = f"more than {self.config.max_links} links: the rest ignored"
        return err, self.admission.page_links(url, depth, page.urls, out), text

    def _move_up(self, url: str, depth: int, referrer: str) -> None:
        """A waiting URL was found at a smaller depth: if it is queued in memory, requeue it."""
        lease = self._leases.get(url)
        if lease is not None:
            self._leases[url] = Lease(url, depth, referrer, lease.attempts)
            self.frontier.push(url, depth)

    async def _flush(self) -> None:
        """Make records durable (`--out` flushed), then commit their state in one transaction."""
        async with self._flush_lock:
            if not self._results and not self._direct:
                return
            batch, self._results = self._results, []
            direct, self._direct = self._direct, []
            spilled, self._spilled = self._spilled, False
            if self.writer is not None:
                self.writer.flush()
            try:
                await self.state.record_results(batch, direct, time.time() + LEASE_SECONDS)
            except BaseException:
                # Cancelled (Ctrl-C) or failed mid-commit: keep the batch for the final flush.
                # Recording is idempotent, so a commit that did land is harmless to repeat.
                self._results[:0] = batch
                self._direct[:0] = direct
                self._spilled |= spilled
                raise
            if spilled:
                self._db_due = True

    async def _background_flush(self) -> None:
        try:
            await self._flush()
        finally:
            self._flush_pending = False
            self._wake.set()

    def _report_progress(self, now: float) -> None:
        if self.on_progress is None or now - self._last_progress < PROGRESS_EVERY:
            return
        self._last_progress = now
        self.on_progress({
            "pages": self.summary.pages, "queued": len(self.frontier),
            "in_flight": self._inflight, "hosts": len(self.frontier.slots.slots),
            "errors": self.summary.failed,
        })
