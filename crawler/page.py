"""What a page handler sees (`Page`) and how its answer is read (`call_handler`).

The handler model is Scrapy's "yield requests and items": a handler may return or yield URLs
(strings: followed like links) and dicts (items, one JSON line each in `--items`). It may be a
plain function, a coroutine function, a generator or an async generator. It runs on the crawl's
event loop: a handler that blocks (CPU-heavy parsing, a synchronous HTTP call) stalls every fetch,
so such work belongs in `asyncio.to_thread` inside an async handler.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from crawler.errors import CrawlError

Handler = Callable[["Page"], Any]


class HandlerError(CrawlError):
    """A page handler raised, or gave something that is neither a URL string nor a dict."""


def charset_of(content_type: str, default: str = "utf-8") -> str:
    """The charset parameter of a Content-Type header value, or *default*."""
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip("\"' ")
    return default


# not frozen: one is made per page, and a frozen dataclass's __init__ costs 5-10x more
@dataclass(slots=True)
class Page:
    """One fetched page: the response as the crawler read it, and where it was found."""

    url: str
    status: int
    headers: Mapping[str, str]  # case-insensitive; every response header
    body: bytes  # decoded from gzip/deflate, cut off at --max-body
    links: tuple[str, ...]  # the normalized links the crawler extracted (HTML pages only)
    depth: int
    referrer: str | None
    decoded: str | None = None  # the text, when the crawler already decoded it

    @property
    def text(self) -> str:
        """The body decoded with the page's charset (undecodable bytes replaced); computed once."""
        if self.decoded is None:
            charset = charset_of(self.headers.get("Content-Type", ""))
            try:
                self.decoded = self.body.decode(charset, "replace")
            except LookupError:  # an unknown charset name
                self.decoded = self.body.decode("utf-8", "replace")
        return self.decoded


async def call_handler(handler: Handler, page: Page) -> tuple[list[str], list[dict[str, Any]]]:
    """Run *handler* on *page*; return the URLs and the items it gave. Raise HandlerError."""
    urls: list[str] = []
    items: list[dict[str, Any]] = []
    try:
        out = handler(page)
        if inspect.isawaitable(out):
            out = await out
        if inspect.isasyncgen(out):
            async for thing in out:
                _take(thing, urls, items)
        elif out is None:
            pass
        elif isinstance(out, (str, dict)):
            _take(out, urls, items)
        else:
            for thing in out:
                _take(thing, urls, items)
    except HandlerError:
        raise
    except Exception as exc:
        raise HandlerError(f"handler raised {exc.__class__.__name__}: {exc}") from exc
    return urls, items


def _take(thing: object, urls: list[str], items: list[dict[str, Any]]) -> None:
    if isinstance(thing, str):
        urls.append(thing)
    elif isinstance(thing, dict):
        items.append(thing)
    elif thing is not None:
        raise HandlerError(f"handler gave a {type(thing).__name__}: only URL strings and dicts "
                           f"(items) are taken")
