"""Pure value types of a crawl's results: one `CrawlRecord` per fetched URL, one `CrawlSummary`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


# not frozen: one is made per page, and a frozen dataclass's __init__ costs 5-10x more
@dataclass(slots=True)
class CrawlRecord:
    """One fetched URL; `as_dict()` is the `--out` JSONL line (keys fixed by the contract)."""

    url: str
    status: int | None  # final HTTP status, None when no response came
    depth: int
    referrer: str | None
    content_length: int  # bytes of body received (after decoding, capped at max_body)
    content_hash: str | None  # sha256 hex of the body
    fetch_time: float  # wall-clock UNIX time the fetch finished
    error: str | None = None
    content_type: str | None = None
    redirect_to: str | None = None  # for a 3xx: the normalized target
    duplicate_of: str | None = None  # same body already seen under this URL
    links: int = 0  # links found and followed from this page
    near_duplicate_of: str | None = None  # an earlier page within SimHash distance 3
    simhash: str | None = None  # the page's 64-bit SimHash, 16 hex digits (HTML of 50+ words)
    etag: str | None = None  # the response's ETag: a recrawl asks If-None-Match with it
    last_modified: str | None = None  # its Last-Modified: a recrawl asks If-Modified-Since

    def as_dict(self) -> dict[str, Any]:
        """The JSON object written for this record."""
        return {name: getattr(self, name) for name in _FIELDS}  # 5x faster than asdict()


_FIELDS = tuple(f.name for f in fields(CrawlRecord))


@dataclass(slots=True)
class CrawlSummary:
    """What a crawl did; `failed` decides exit status 3."""

    pages: int = 0  # records (fetched URLs)
    statuses: dict[str, int] = field(default_factory=dict)  # "200" / "error" -> count
    failed: int = 0  # records with no response or a final 5xx
    errors: int = 0  # records carrying an error text
    robots_denied: int = 0
    robots_fetches: int = 0
    duplicates_skipped: int = 0  # links to URLs already known
    duplicate_content: int = 0  # bodies already seen under another URL
    near_duplicates: int = 0  # pages within SimHash distance 3 of an earlier one
    out_of_scope: int = 0
    refused_private: int = 0
    trap_guarded: int = 0  # URLs dropped by a trap guard or the URL length limit
    invalid_links: int = 0
    retries: int = 0
    recrawled: int = 0  # URLs fetched again by --recrawl
    unchanged: int = 0  # of those, answered 304 Not Modified
    sitemap_fetches: int = 0
    sitemap_files: int = 0  # sitemaps read without error
    sitemap_urls: int = 0  # new URLs they gave
    sitemap_errors: list[str] = field(default_factory=list)  # one line per hostile or bad sitemap
    items: int = 0  # items the page handler gave
    handler_errors: int = 0  # pages whose handler raised (the error is in their record)
    bytes: int = 0
    seconds: float = 0.0
    resumed: bool = False
    # origin -> [why its robots.txt could not be fetched, URLs left unfetched for that]
    unreachable: dict[str, list[Any]] = field(default_factory=dict)

    def add_unreachable(self, origin: str, reason: str) -> None:
        """Count one URL not fetched because its origin's robots.txt could not be fetched."""
        entry = self.unreachable.setdefault(origin, [reason, 0])
        entry[0], entry[1] = reason, entry[1] + 1
        self.failed += 1

    def add(self, record: CrawlRecord) -> None:
        """Count one record."""
        self.pages += 1
        key = "error" if record.status is None else str(record.status)
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if record.status is None or record.status >= 500:
            self.failed += 1
        if record.error:
            self.errors += 1
        if record.duplicate_of:
            self.duplicate_content += 1
        if record.near_duplicate_of:
            self.near_duplicates += 1
        self.bytes += record.content_length

    def lines(self) -> list[str]:
        """A short human-readable report."""
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items())) or "none"
        rate = self.pages / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"pages fetched: {self.pages} in {self.seconds:.1f} s ({rate:.0f}/s), "
            f"{self.bytes / 1e6:.1f} MB{' (resumed)' if self.resumed else ''}",
            f"statuses: {statuses}",
            f"robots.txt: {self.robots_fetches} fetches, {self.robots_denied} URLs denied",
            f"skipped: {self.duplicates_skipped} already-known links, {self.out_of_scope} out of "
            f"scope, {self.trap_guarded} trap-guarded, {self.invalid_links} invalid, "
            f"{self.refused_private} private addresses",
            f"duplicate content: {self.duplicate_content}, near duplicates: "
            f"{self.near_duplicates}; retries: {self.retries}; "
            f"failed: {self.failed}; records with errors: {self.errors}",
        ]
        if self.recrawled:
            lines.append(f"recrawl: {self.recrawled} URLs fetched again, {self.unchanged} "
                         f"unchanged (304)")
        if self.sitemap_fetches or self.sitemap_errors:
            lines.append(f"sitemaps: {self.sitemap_fetches} fetches, {self.sitemap_files} read, "
                         f"{self.sitemap_urls} new URLs, {len(self.sitemap_errors)} errors")
            lines.extend(f"  sitemap error: {e}" for e in self.sitemap_errors[:20])
        if self.items or self.handler_errors:
            lines.append(f"handler: {self.items} items, {self.handler_errors} errors")
        lines.extend(self.unreachable_lines())
        return lines

    def unreachable_lines(self, most: int = 20) -> list[str]:
        """One line per unreachable origin (the first *most*), and one if nothing was fetched."""
        out = []
        for origin, (reason, urls) in sorted(self.unreachable.items())[:most]:
            out.append(f"{_bare(origin)}: robots.txt unreachable ({reason}): {urls} URL"
                       f"{'' if urls == 1 else 's'} not fetched")
        if len(self.unreachable) > most:
            out.append(f"... and {len(self.unreachable) - most} more unreachable hosts")
        if self.unreachable and self.pages == 0:
            out.append(f"nothing fetched: every host was unreachable "
                       f"({len(self.unreachable)} host{'' if len(self.unreachable) == 1 else 's'})")
        return out


def _bare(origin: str) -> str:
    """An origin as users name it: the scheme dropped ("127.0.0.1:1", "https://" kept)."""
    return origin[len("http://"):] if origin.startswith("http://") else origin
