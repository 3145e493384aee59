"""https:// for the Fetcher (I/O): one aiohttp session, made at the first https:// URL of a crawl.

aiohttp is kept for TLS (certificates, SNI, its error types) and loads only here: http:// goes
through the lean client of http1.py, and a crawl that never meets https:// skips aiohttp's ~0.2 s of
import (most of it building TLS contexts) at every process start, every worker's included.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from typing import Any

import aiohttp
from yarl import URL  # aiohttp's own URL type (a dependency of aiohttp)

from crawler.errors import BadResponse, ConnectFailed, FetchError, FetchTimeout
from crawler.fetcher import _CHUNK, Exchange, FetchResult, _Decoder, connect_reason


class TlsSession:
    """The aiohttp session of one Fetcher: its limits, its guarded resolver, no decompression."""

    def __init__(self, fetcher: Any, limits: tuple[int, int], resolver: Any) -> None:
        """Share *fetcher*'s settings (timeout, cap, capture) and *resolver*."""
        self.fetcher = fetcher
        self._resolver = resolver
        connector = aiohttp.TCPConnector(limit=limits[0], limit_per_host=limits[1],
                                         resolver=resolver)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": fetcher.user_agent, "Accept-Encoding": "gzip, deflate"},
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=fetcher.timeout),
        )

    async def close(self) -> None:
        """Close the session and its connections."""
        await self._session.close()

    async def fetch(self, url: str, headers: dict[str, str] | None = None) -> FetchResult:
        """Fetcher.fetch() of an https:// URL."""
        started = time.monotonic()
        sent_at = time.time()
        try:
            async with asyncio.timeout(self.fetcher.timeout):
                # the crawler's URLs are normalized and percent-encoded already: encoded=True
                # spares aiohttp parsing and re-encoding each one
                async with self._session.get(URL(url, encoded=True), allow_redirects=False,
                                             headers=headers) as resp:
                    answered_at = time.monotonic()
                    raw: list[bytes] | None = None
                    exchange = None
                    if self.fetcher.capture:
                        raw = []
                        exchange = _exchange_head(resp, sent_at, self._resolver.last)
                    body, truncated = await self._read_capped(resp, raw)
                    if exchange is not None and raw is not None:
                        exchange.payload = body if raw == [] else b"".join(raw)
                    headers = resp.headers
                    return FetchResult(
                        url=url,
                        status=resp.status,
                        content_type=headers.get("Content-Type", ""),
                        location=headers.get("Location"),
                        retry_after=headers.get("Retry-After"),
                        body=body,
                        truncated=truncated,
                        seconds=time.monotonic() - started,
                        answered_at=answered_at,
                        headers=headers,
                        exchange=exchange,
                    )
        except TimeoutError:
            raise FetchTimeout(f"{url}: no complete answer within {self.fetcher.timeout:g} s",
                               "timeout") from None
        except aiohttp.ClientPayloadError as exc:
            raise BadResponse(f"{url}: broken body ({exc})", "broken body") from exc
        except aiohttp.ClientResponseError as exc:
            raise BadResponse(f"{url}: {exc.message}", "bad response") from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise ConnectFailed(f"{url}: {exc}", connect_reason(exc)) from exc
        except aiohttp.InvalidURL as exc:
            raise FetchError(f"{url}: invalid URL ({exc})", "invalid URL") from exc
        except aiohttp.ClientError as exc:
            raise BadResponse(f"{url}: {exc}", "bad response") from exc

    async def _read_capped(self, resp: aiohttp.ClientResponse,
                           raw_out: list[bytes] | None = None) -> tuple[bytes, bool]:
        """The decoded body and whether it was cut off; *raw_out* gets the entity as received
        when it differs from the decoded body (left empty when they are the same bytes)."""
        encoding = resp.headers.get("Content-Encoding", "")
        if not encoding and resp.content_length is not None and resp.content_length <= self.fetcher.max_body:
            # The common answer, read in one call: aiohttp's parser stops at Content-Length (a
            # longer body is not read) and raises ClientPayloadError if it ends early.
            return await resp.read(), False
        decoder = _Decoder(encoding, resp.url)
        keep_raw = raw_out is not None and decoder.zobj is not None
        chunks, size = [], 0
        async for raw in resp.content.iter_chunked(_CHUNK):
            if keep_raw:
                raw_out.append(raw)  # type: ignore[union-attr]
            for chunk in decoder.feed(raw, self.fetcher.max_body - size + 1):
                room = self.fetcher.max_body - size
                if len(chunk) > room:
                    chunks.append(chunk[:room])
                    return b"".join(chunks), True
                chunks.append(chunk)
                size += len(chunk)
        decoder.finish()
        return b"".join(chunks), False


def _exchange_head(resp: aiohttp.ClientResponse, sent_at: float,
                   addresses: dict[str, str]) -> Exchange:
    """The request and response heads of *resp*, and the peer's address (read before the body,
    while the connection is still the response's)."""
    info = resp.request_info
    target = info.url.raw_path_qs or "/"
    lines = [f"{info.method} {target} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in info.headers.items())
    request_head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    version = resp.version
    status_line = (f"HTTP/{version.major}.{version.minor} {resp.status} {resp.reason or ''}"
                   .rstrip() + "\r\n")
    response_head = status_line.encode("latin-1", "replace") + b"".join(
        name + b": " + value + b"\r\n" for name, value in resp.raw_headers) + b"\r\n"
    ip = None
    conn = resp.connection  # None once aiohttp has released it (a body read with the head)
    if conn is not None and conn.transport is not None:
        peer = conn.transport.get_extra_info("peername")
        ip = peer[0] if peer else None
    if ip is None:
        host = info.url.raw_host or ""
        ip = host.strip("[]") if _is_ip(host.strip("[]")) else addresses.get(host.lower())
    return Exchange(sent_at, ip, request_head, response_head, b"")


@functools.lru_cache(maxsize=1024)  # one answer per host: ipaddress parsing is ~10 µs
def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
