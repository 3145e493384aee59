"""Where a fetched page goes after the fetch: `--out`, `--warc` and `--items` are peers behind one
small interface, `Sink`: `accept(fetched, record, items)` buffers, `flush()` hands everything to the
OS, and the engine flushes every sink before the crawl state marks a URL fetched. So after a kill
-9, every URL the state holds as fetched has its JSONL record, its WARC records and its items.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from crawler.errors import OutputError
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
    """`--warc DIR`: request and response (or revisit) records of every exchange.

    The records are encoded and written by a child process where one can be forked (see
    crawler/warc_process.py), otherwise in this one; `await flushed()` after flush() returns
    once they are written either way."""

    def __init__(self, directory: str, max_size: int, info: dict[str, str],
                 prefix: str = "fanmill", separate: bool | None = None) -> None:
        """Open the archive directory (repairing a torn tail left by a kill) for the files whose
        names start with *prefix* (each worker of a crawl has its own). *separate*: write from a
        child process (None: when one can be forked, crawler.warc_process)."""
        from crawler import warc_process  # its library loads only when archiving

        if separate is None:
            separate = warc_process.separate_process_possible()
        writer_class = warc_process.WarcProcess if separate else warc_process.WarcWriter
        self.writer = writer_class(directory, max_size=max_size, info=info, prefix=prefix)
        self.separate = separate

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
        """Hand the records to the OS (from a child process: once flushed() returns)."""
        self.writer.flush()

    async def flushed(self) -> None:
        """Return once what flush() was given is written; raise the writer's error."""
        if self.separate:
            await self.writer.flushed()

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


def open_sinks(cfg: Any) -> tuple[list[Sink], JsonlSink | None, WarcSink | None]:
    """The outputs *cfg* asks for, in the order they are flushed, and the `--out` and `--warc`
    ones (None when not asked for)."""
    sinks: list[Sink] = []
    jsonl = JsonlSink(cfg.out) if cfg.out else None
    warc = None
    try:
        if jsonl is not None:
            sinks.append(jsonl)
        if cfg.warc:
            try:
                warc = WarcSink(cfg.warc, cfg.warc_max_size, warc_info(cfg), cfg.warc_prefix)
            except (OSError, ValueError) as exc:  # WarcDamagedError is a ValueError
                raise OutputError(f"cannot use --warc {cfg.warc}: {exc}") from exc
            sinks.append(warc)
        if cfg.items:
            sinks.append(ItemsSink(cfg.items))
    except BaseException:
        close_sinks(sinks)
        raise
    return sinks, jsonl, warc


def close_sinks(sinks: list[Sink]) -> None:
    """Close every sink, in order; the first error is raised once all are closed."""
    error: BaseException | None = None
    for sink in sinks:
        try:
            sink.close()
        except BaseException as exc:  # noqa: BLE001 - the others must still be closed
            error = error or exc
    if error is not None:
        raise error


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
