"""Exceptions of the crawler package.

    CrawlError          base of every error the crawler raises on purpose
    ├── InvalidURL      a string that is not an absolute http(s) URL the crawler can fetch (also a ValueError)
    ├── FetchError      a fetch failed
        ├── FetchTimeout    no complete answer in time
        ├── ConnectFailed   no connection (refused, unreachable, reset)
        └── BadResponse     a broken answer (Content-Length lie, broken compression, bad framing)
    ├── StateError      the crawl state file cannot be used
    └── OutputError     an output (--warc directory, ...) cannot be used
"""

from __future__ import annotations


class CrawlError(Exception):
    """Base class of every error raised on purpose by the crawler package."""


class InvalidURL(CrawlError, ValueError):
    """The string is not an absolute http(s) URL the crawler can fetch; the message says why."""


class FetchError(CrawlError):
    """A fetch failed; the message names the URL and the cause, `reason` the cause in a few words."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or "fetch failed"


class FetchTimeout(FetchError):
    """The server did not answer, or did not finish the body, in time."""


class ConnectFailed(FetchError):
    """No connection could be made (refused, unreachable, reset before an answer)."""


class BadResponse(FetchError):
    """The response broke the protocol: a body shorter or longer than its Content-Length, broken
    compression, bad framing."""


class StateError(CrawlError):
    """The crawl state file cannot be opened, read or written; the message names the path."""


class OutputError(CrawlError):
    """An output cannot be used (a damaged file in the --warc directory, ...); the message says
    which and why."""
