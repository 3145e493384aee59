"""The engine's host side, as a mixin of the crawl (`_Crawl` in engine.py): robots.txt gates
each leased URL (held until its origin's rules are known, then admitted, denied, or failed as
unreachable with the reason), sitemaps feed URLs in, every non-page request (robots.txt, sitemaps)
takes its host's politeness slot, and the page handler's answer is taken in.

A mixin, not a separate object: these methods share the crawl's frontier, admission, summary,
sinks and task group with the dispatcher; splitting them into their own file keeps engine.py about
the dispatch loop and the commits.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from crawler.admission import Link
from crawler.errors import ConnectFailed, FetchError, InvalidURL
from crawler.fetcher import FetchResult
from crawler.guards import refuse_private
from crawler.page import HandlerError, Page, call_handler
from crawler.recorder import Recorded
from crawler.records import CrawlRecord
from crawler.retry import backoff, parse_retry_after
from crawler.robots import RobotsRules
from crawler.sinks import item_json
from crawler.sitemap_fetch import load_sitemaps
from crawler.state import Lease
from crawler.urls import Origin, normalize_url, origin_of


class HostGate:
    """Robots.txt, sitemaps and the page handler for `_Crawl` (see the module docstring)."""

    # set by _Crawl.__init__ / run(); listed for readers and type checkers
    config: Any
    summary: Any

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
            self._results.append((lease.url, "failed", self._store_record(None, record, []), [],
                                  None))
        else:
            self.summary.robots_denied += 1
            self._results.append((lease.url, "failed", None, [], None))

    def _store_record(self, fetched: FetchResult | None, record: CrawlRecord,
                      items: list[str]) -> dict[str, Any] | str:
        """Hand a fetched URL to every sink (flushed before the next commit); return what the
        state keeps of its record."""
        for sink in self.sinks:
            sink.accept(fetched, record, items)
        if self.on_record is not None:
            self.on_record(record)
        return record.as_dict() if self.jsonl is None else self.jsonl.last_text

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
            if self.config.sitemaps and origin not in self._sitemap_origins:
                self._sitemap_origins.add(origin)
                self._sitemap_tasks += 1
                self.tg.create_task(self._load_sitemaps(origin, rules))
        finally:
            self._robots_tasks -= 1
            self._wake.set()

    async def _load_sitemaps(self, origin: Origin, rules: RobotsRules) -> None:
        try:
            files = await load_sitemaps(
                origin, rules, self._sitemap_walk, get=self._sitemap_get,
                in_scope=self.scope.allows, on_entries=self._sitemap_entries,
                on_error=self.summary.sitemap_errors.append)
            self.summary.sitemap_files += files  # after the await: tasks run side by side
        finally:
            self._sitemap_tasks -= 1
            self._wake.set()

    def _sitemap_entries(self, found: list[tuple[str, str | None, str]]) -> None:
        """URLs a sitemap listed enter at depth 0, through every check a link goes through."""
        for url, lastmod, sitemap in found:
            self.summary.sitemap_urls += self.admission.discover(
                url, 0, sitemap, self._sitemap_links, 0)
            if lastmod:
                self._lastmods.append((url, lastmod))
        self._take_fresh()
        self._wake.set()

    async def _sitemap_get(self, url: str) -> FetchResult:
        """One sitemap request (counted apart from robots.txt requests)."""
        return await self._polite_get(url, sitemap=True)

    async def _polite_get(self, url: str, sitemap: bool = False) -> FetchResult:
        """One robots.txt or sitemap request, sent through its host's politeness slot like any
        page (and archived with `--warc`)."""
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
        if sitemap:
            self.summary.sitemap_fetches += 1
        else:  # robots.txt, or where its redirects lead
            self.summary.robots_fetches += 1
        try:
            result = await self.fetcher.fetch(url)
            if self.warc is not None:
                self.warc.archive(result)
            return result
        finally:
            slots.answered(origin, loop.time())
            self.frontier.done(origin)
            self._wake.set()

    # -- one page -------------------------------------------------------------------------------

    async def _handle(self, result: FetchResult, recorded: Recorded, lease: Lease,
                      links: list[Link]) -> list[str]:
        """Run the page handler; admit the URLs it gives, return its items as JSON texts. Its
        failure is the record's error, and the crawl goes on."""
        assert self.on_page is not None
        record = recorded.record
        page = Page(result.url, result.status, result.headers or {}, result.body,
                    recorded.urls, lease.depth, lease.referrer, recorded.text)
        try:
            urls, items = await call_handler(self.on_page, page)
            texts = []
            for item in items:
                try:
                    texts.append(item_json(item))
                except (TypeError, ValueError) as exc:
                    raise HandlerError(f"handler gave an item that is not JSON: {exc}") from exc
        except HandlerError as exc:
            self.summary.handler_errors += 1
            record.error = f"{record.error}; {exc}" if record.error else str(exc)
            return []
        self.summary.items += len(texts)
        depth = lease.depth + 1
        for url in urls:
            try:
                target = normalize_url(url, result.url)
            except InvalidURL:
                self.summary.invalid_links += 1
                continue
            if self.config.max_depth is None or depth <= self.config.max_depth:
                record.links += self.admission.discover(target, depth, result.url, links, 0)
        return texts
