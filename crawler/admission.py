"""Which discovered URLs enter a crawl, and at which depth (pure): the exact seen-URL index, scope,
private-address refusal, trap guards, and depth relaxation.

A URL keeps the smallest depth it is found at. With a depth limit, a fetched page's links (and a
redirect's target) are kept: hosts run at different speeds, so a page may be fetched at depth 3
before another host links it at depth 1; its links then get their smaller depths too, and a page
within the limit is never dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from crawler.config import CrawlConfig
from crawler.guards import refuse_private, trap_reason
from crawler.records import CrawlSummary
from crawler.scope import Scope
from crawler.urls import Origin, origin_of

Link = tuple[str, int, str | None]  # (url, depth, referrer) as the state stores it


class Admission:
    """The crawl's admission rules and its seen-URL index; counts what it refuses in *summary*."""

    def __init__(self, config: CrawlConfig, scope: Scope, seed_hosts: frozenset[str],
                 summary: CrawlSummary, on_move_up: Callable[[str, int, str], None]) -> None:
        """*on_move_up(url, depth, referrer)* is told when a waiting URL gets a smaller depth."""
        self.config, self.scope, self.seed_hosts, self.summary = config, scope, seed_hosts, summary
        self.on_move_up = on_move_up
        self.known: dict[str, int] = {}  # url -> best depth: the exact seen-URL index
        self.hops: dict[str, int] = {}  # redirect hops that led to a URL
        self._per_host: dict[Origin, int] = {}
        self._query_variants: dict[str, int] = {}  # path without query -> URLs admitted
        self._outlinks: dict[str, tuple[str, ...]] = {}
        self._redirected: dict[str, str] = {}
        self.fresh: list[Link] = []  # admitted since the engine last took them (new URLs only)

    def restore(self, url: str, depth: int) -> None:
        """Know *url* (from the state of a resumed crawl) without admitting it again."""
        self.known[url] = depth
        origin = origin_of(url)
        self._per_host[origin] = self._per_host.get(origin, 0) + 1

    def restore_hops(self, redirects: list[tuple[str, str]]) -> None:
        """Rebuild redirect hop counts from (url, target) pairs: a chain cut by a restart still
        ends at the hop limit."""
        source = {target: url for url, target in redirects}
        for target in source:
            hops, url, seen = 0, target, set()
            while url in source and url not in seen:  # `seen`: a redirect loop ends the walk
                seen.add(url)
                hops, url = hops + 1, source[url]
            self.hops[target] = hops

    def page_links(self, url: str, depth: int, links: tuple[str, ...], out: list[Link]) -> int:
        """Admit the links of page *url* fetched at *depth*; return how many were new."""
        if self.config.max_depth is not None:
            self._outlinks[url] = links
            if depth + 1 > self.config.max_depth:
                return 0
        return sum(self.discover(link, depth + 1, url, out, 0) for link in links)

    def redirect(self, url: str, target: str, depth: int, out: list[Link]) -> tuple[str | None, int]:
        """Admit the target of a redirect from *url*: (error text past the hop limit, 1 if new)."""
        hops = self.hops.get(url, 0) + 1
        if hops > self.config.max_redirects:
            return f"more than {self.config.max_redirects} redirects", 0
        if self.config.max_depth is not None:
            self._redirected[url] = target
        return None, self.discover(target, depth, url, out, hops)

    def discover(self, url: str, depth: int, referrer: str, out: list[Link], hops: int) -> int:
        """Admit one found URL (appended to *out* for the state); 1 if new."""
        best = self.known.get(url)
        if best is not None:
            if depth < best:  # the state moves a still-waiting URL up to the smaller depth
                self.known[url] = depth
                out.append((url, depth, referrer))
                self.on_move_up(url, depth, referrer)
                self._relax(url, depth, out)
            self.summary.duplicates_skipped += 1
            return 0
        if not self.scope.allows(url):
            self.summary.out_of_scope += 1
            return 0
        origin = origin_of(url)
        if refuse_private(origin, self.seed_hosts, self.config.allow_private):
            self.summary.refused_private += 1
            return 0
        count = self._per_host.get(origin, 0)
        if trap_reason(url, self.config) is not None or count >= self.config.max_urls_per_host:
            self.summary.trap_guarded += 1
            return 0
        if "?" in url:  # calendars and session ids: endless queries on one path
            path = url.partition("?")[0]
            variants = self._query_variants.get(path, 0)
            if variants >= self.config.max_query_variants:
                self.summary.trap_guarded += 1
                return 0
            self._query_variants[path] = variants + 1
        self._per_host[origin] = count + 1
        self.known[url] = depth
        if hops:
            self.hops[url] = hops
        out.append((url, depth, referrer))
        self.fresh.append((url, depth, referrer))
        return 1

    def _relax(self, url: str, depth: int, out: list[Link]) -> None:
        """*url*, maybe fetched already, was found at a smaller *depth*: pass that on."""
        target = self._redirected.get(url)
        if target is not None:
            self.discover(target, depth, url, out, self.hops.get(url, 0) + 1)
        if self.config.max_depth is None or depth + 1 > self.config.max_depth:
            return
        for link in self._outlinks.get(url, ()):
            self.discover(link, depth + 1, url, out, 0)
