"""The crawl's configuration: one frozen, keyword-only dataclass (httpx `Limits` style)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class CrawlConfig:
    """Everything that shapes a crawl; the defaults are polite (1 s per host, one at a time)."""

    delay: float = 1.0  # minimum gap between two sends to one origin (Crawl-delay when longer)
    per_host: int = 1  # requests in flight to one origin
    concurrency: int = 16  # requests in flight overall
    max_pages: int | None = None  # stop after this many fetched URLs (records)
    max_depth: int | None = None  # links followed at most this many hops from a seed
    user_agent: str = "fanmill"
    allow_hosts: tuple[str, ...] = ()  # host globs added to the seeds' origins
    allow_private: bool = False  # allow private/loopback/link-local/multicast IP targets
    timeout: float = 30.0  # one whole exchange, body included
    max_body: int = DEFAULT_MAX_BODY  # bytes kept of a body; a larger one is cut off and recorded
    max_redirects: int = 5  # redirect hops followed from one URL
    max_links: int = 100_000  # links taken from one page (a 10 MiB body holds ~500,000 at most)
    max_url_length: int = 2000  # longer URLs are skipped (a trap guard and hostile-input rule)
    max_path_segments: int = 32  # trap guard: ever-deeper paths
    max_segment_repeats: int = 3  # trap guard: /a/b/a/b/a/b/...
    max_urls_per_host: int = 100_000  # trap guard: URLs admitted per origin
    max_query_variants: int = 1000  # trap guard: URLs sharing one path with different queries
    max_retries: int = 2  # retries of a transient failure (timeout, connect, 429, 5xx)
    retry_base: float = 1.0  # first backoff ceiling in seconds (full jitter)
    max_retry_after: float = 120.0  # a Retry-After longer than this is capped
    state: str | None = None  # SQLite crawl state; the same file resumes a crawl
    out: str | None = None  # JSONL records ("-" for stdout)
    warc: str | None = None  # directory of WARC/1.1 files (request, response, revisit records)
    warc_max_size: int = 1 << 30  # a WARC file passing this size is closed; the next one begins
    recrawl: float | None = None  # with a known state: fetch again what is older (seconds)
    sitemaps: bool = False  # read each in-scope host's sitemaps (robots.txt Sitemap:, /sitemap.xml)
    items: str | None = None  # JSONL of the items the page handler gives ("-" for stdout)
    window: int = 10_000  # URLs leased from the state into the in-memory frontier at most
    worker: str | None = None  # this worker's id: share the crawl with other workers (shared.py)
    lease: float = 30.0  # seconds a worker's claim on a host lasts without a heartbeat
    warc_prefix: str = "fanmill"  # WARC file names start with it (a worker adds its id)

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError("delay must be >= 0")
        for name in ("per_host", "concurrency", "max_body", "max_url_length", "window",
                     "warc_max_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_pages is not None and self.max_pages < 0:
            raise ValueError("max_pages must be >= 0")
        if self.max_depth is not None and self.max_depth < 0:
            raise ValueError("max_depth must be >= 0")
        if self.recrawl is not None and self.recrawl < 0:
            raise ValueError("recrawl must be >= 0")
        if self.lease <= 0:
            raise ValueError("lease must be > 0")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
