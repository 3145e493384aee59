"""Where a fetched page goes after the fetch: `--out`, `--warc` and `--items` are peers behind one
small interface, `Sink`: `accept(fetched, record, items)` buffers, `flush()` hands everything to the
OS, and the engine flushes every sink before the crawl state marks a URL fetched. So after a kill
-9, every URL the state holds as fetched has its JSONL record, its WARC records and its items.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from crawler.fetcher import FetchResult
from crawler.output import JsonLines, JsonlWriter
from crawler.records import CrawlRecord
from crawler.warc_files import warc_date


class Sink(Protocol):
    """One output of a crawl."""

    def accept(self, fetched: FetchResult | None, record: CrawlRecord, items: list[str]) -> None:
        """Buffer what this sink keeps of one fetched URL (*fetched* is None without a response;
        *items* are the handler's items, each already one JSON text)."""

    def flush(self) -> None:
        """Hand everything buffered to the OS (it survives a kill -9 of this process)."""

    def close(self) -> None:
        """Flush and release the output."""


class JsonlSink:
    """`--out`: one JSON record per fetched URL; its text is also what the state keeps."""

    def __init__(self, path: str) -> None:
        """Append to *path* ("-" for stdout); a torn last line is cut off first."""
        self.writer = JsonlWriter(path)
        self.last_text: str | None = None

    def accept(self, fetched: FetchResult | None, record: CrawlRecord, items: list[str]) -> None:
        """Write the record."""
        self.last_text = self.writer.write(record)

    def flush(self) -> None:
        """Hand the records to the OS."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close."""
        self.writer.close()


class WarcSink:
    """`--warc DIR`: request and response (or revisit) records of every exchange."""

    def __init__(self, directory: str, max_size: int, info: dict[str, str],
                 prefix: str = "fanmill") -> None:
        """Open the archive directory (repairing a torn tail left by a kill) for the files whose
        names start with *prefix* (each worker of a crawl has its own)."""
        from crawler.warc import WarcWriter  # its library loads only when archiving

        self.writer = WarcWriter(directory, max_size=max_size, info=info, prefix=prefix)

    def accept(self, fetched: FetchResult | None, record: CrawlRecord, items: list[str]) -> None:
        """Archive the exchange, if there was one (a 304 to a recrawl as a revisit)."""
        if fetched is None:
            return
        if fetched.status == 304 and fetched.revisit_of is not None:
            self.not_modified(fetched, warc_date(fetched.revisit_of))
        else:
            self.archive(fetched)

    def archive(self, fetched: FetchResult) -> None:
        """Write one exchange (pages and robots.txt alike)."""
        ex = fetched.exchange
        if ex is None:
            return
        self.writer.write_exchange(
            url=fetched.url, fetched_at=ex.fetched_at, ip=ex.ip, request_head=ex.request_head,
            response_head=ex.response_head, payload=ex.payload, truncated=fetched.truncated)

    def not_modified(self, fetched: FetchResult, refers_to_date: str | None) -> None:
        """Archive a 304 answer to a conditional request as a server-not-modified revisit."""
        ex = fetched.exchange
        if ex is None:
            return
        self.writer.write_revisit_not_modified(
            url=fetched.url, fetched_at=ex.fetched_at, ip=ex.ip, request_head=ex.request_head,
            response_head=ex.response_head, refers_to_date=refers_to_date)

    def flush(self) -> None:
        """Hand the records to the OS."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the current file."""
        self.writer.close()


class ItemsSink:
    """`--items FILE.jsonl`: what the page handler gave, one JSON object per line."""

    def __init__(self, path: str) -> None:
        """Append to *path* ("-" for stdout); a torn last line is cut off first."""
        self.lines = JsonLines(path)

    def accept(self, fetched: FetchResult | None, record: CrawlRecord, items: list[str]) -> None:
        """Write the items."""
        for item in items:
            self.lines.write_line(item)

    def flush(self) -> None:
        """Hand the items to the OS."""
        self.lines.flush()

    def close(self) -> None:
        """Flush and close (stdout is flushed, not closed)."""
        self.lines.close()


def warc_info(config: Any) -> dict[str, str]:
    """The warcinfo fields of a crawl: software, user agent, robots policy and the options."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        software = f"fanmill/{version('fanmill')}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        software = "fanmill"
    options = {name: getattr(config, name) for name in (
        "delay", "per_host", "concurrency", "max_pages", "max_depth", "max_body", "allow_hosts",
        "max_retries", "timeout")}
    return {
        "software": software,
        "http-header-user-agent": config.user_agent,
        "robots": "obey (RFC 9309; an unreachable robots.txt disallows the host)",
        "description": "fanmill crawl: " + json.dumps(options, sort_keys=True, default=str),
    }


def item_json(item: dict[str, Any]) -> str:
    """One item as a JSON line (non-ASCII kept as is); raise TypeError/ValueError if it cannot."""
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
