"""The HTTP edge (I/O): http:// on the lean keep-alive client of http1.py (half the CPU per request
of aiohttp's), https:// on one aiohttp session; redirects are returned, never followed here.

Every response is read in bounded chunks up to `max_body` bytes: a larger body is cut off and
reported, never held whole. Bodies are decompressed here, not by aiohttp, because aiohttp accepts a
truncated or garbled gzip stream as a short body without an error; here the decompressor must reach
its end, and the cap applies to the decompressed bytes (a gzip bomb stops at max_body). aiohttp's exceptions are mapped once, here, to the crawler's own
(FetchError and subclasses), so the engine records one clear error per URL and goes on.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Any

from crawler.errors import BadResponse, ConnectFailed, FetchError, FetchTimeout
from crawler.guards import is_private_address
from crawler.http1 import Http1Pool, ResponseError

DEFAULT_MAX_BODY = 10 * 1024 * 1024
_CHUNK = 64 * 1024


# not frozen: one is made per page, and a frozen dataclass's __init__ costs 5-10x more
@dataclass(slots=True)
class FetchResult:
    """One HTTP exchange: status, the headers the crawler uses, the (possibly cut-off) body."""

    url: str
    status: int
    content_type: str
    location: str | None  # for 3xx: where the server points (not followed here)
    retry_after: str | None
    body: bytes
    truncated: bool  # the body was longer than max_body and was cut off
    answered_at: float  # time.monotonic() when the status line and headers arrived
    seconds: float
    headers: Any = None  # every response header (a case-insensitive multidict)
    exchange: Exchange | None = None  # the bytes on the wire, when the fetcher captures them
    revisit_of: float | None = None  # a 304 to a recrawl: wall time of the answer it confirms


@dataclass(slots=True)
class Exchange:
    """One HTTP exchange as sent and received, for an archive (WARC)."""

    fetched_at: float  # wall-clock UNIX time the request was sent
    ip: str | None  # the server's address
    request_head: bytes  # request line and headers, as sent
    response_head: bytes  # status line and headers, as received, with the blank line
    payload: bytes  # the entity as received: de-chunked, not content-decoded, maybe cut off


def connect_reason(exc: BaseException) -> str:
    """The cause of a failed connection in a few words, for the summary and the records."""
    if isinstance(exc, ssl.SSLError) or _aiohttp_error(exc, "ClientSSLError"):
        return "TLS failure"
    cause = getattr(exc, "os_error", exc)
    if isinstance(cause, socket.gaierror):
        return "name not resolved"
    if isinstance(cause, RefusedAddress):
        return str(cause)
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, TimeoutError) or _aiohttp_error(exc, "ConnectionTimeoutError"):
        return "timeout"
    if isinstance(exc, ConnectionResetError) or _aiohttp_error(exc, "ServerDisconnectedError"):
        return "connection closed by the server"
    return "connection failed"


def _aiohttp_error(exc: BaseException, name: str) -> bool:
    """Whether *exc* is aiohttp's exception *name* (aiohttp loads only for https://)."""
    aiohttp = sys.modules.get("aiohttp")
    return aiohttp is not None and isinstance(exc, getattr(aiohttp, name))


class RefusedAddress(OSError):
    """A name the resolver will not connect to (private addresses of a non-seed name)."""


class SystemResolver:
    """The system's resolver (getaddrinfo in the loop's thread pool), answering as aiohttp's
    resolvers do: one dict per address, its "host" the address."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[Any]:
        """The addresses of *host*; raise socket.gaierror when it has none."""
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, family=family, flags=socket.AI_ADDRCONFIG)
        return [{"hostname": host, "host": address[0], "port": address[1], "family": fam,
                 "proto": proto, "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV}
                for fam, _, proto, _, address in infos]

    async def close(self) -> None:
        """Nothing to release."""


class GuardedResolver:
    """Resolves names, then refuses private, loopback, link-local and multicast addresses unless
    the name is one of *trusted* (the seeds' hosts; None trusts every name). Checked on the
    address, not the name, so a public-looking name pointing at 10.0.0.1 or 169.254.169.254 is
    refused too. Names under .invalid fail at once without a query (RFC 6761 §6.4). It serves
    aiohttp's connector too (same interface as aiohttp's resolvers)."""

    def __init__(self, trusted: frozenset[str] | None, inner: Any = None) -> None:
        """Wrap *inner* (the system's resolver when None)."""
        self._trusted = trusted
        self._inner = inner if inner is not None else SystemResolver()
        self.last: dict[str, str] = {}  # name -> the first address it resolved to

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[Any]:
        """Resolve *host*; raise OSError if every address it has is refused."""
        name = host.lower().rstrip(".")
        if name == "invalid" or name.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: .invalid names never resolve")
        results = await self._inner.resolve(host, port, family)
        if self._trusted is not None and name not in self._trusted:
            results = [r for r in results if not is_private_address(r["host"])]
            if not results:
                raise RefusedAddress(f"refused: {host} resolves only to private addresses")
        if results:  # the address a connection tries first (WARC-IP-Address)
            self.last[name] = results[0]["host"]
        return results

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()


class Fetcher:
    """The crawler's HTTP client; use as `async with Fetcher(...) as f:`."""

    def __init__(self, *, user_agent: str, max_body: int = DEFAULT_MAX_BODY, timeout: float = 30.0,
                 connections: int = 100, per_host_connections: int = 2,
                 trusted_hosts: frozenset[str] | None = None, capture: bool = False) -> None:
        """Configure the session; *timeout* bounds a whole exchange, body included; *capture*
        keeps each exchange's raw bytes (`FetchResult.exchange`) for an archive."""
        self.capture = capture
        self.user_agent = user_agent
        self.max_body = max_body
        self.timeout = timeout
        self._limits = (connections, per_host_connections)
        self._http1: Http1Pool | None = None
        self._tls: Any = None  # fetcher_tls.TlsSession, made at the first https:// URL
        # None: resolve freely (--allow-private); otherwise refuse private addresses of other names
        self._trusted = trusted_hosts

    async def __aenter__(self) -> Fetcher:
        self._resolver = GuardedResolver(self._trusted)
        self._http1 = Http1Pool(self.user_agent, self._resolve_any, max_idle=self._limits[0])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._http1 is not None:
            self._http1.close()
            self._http1 = None
        if self._tls is not None:
            await self._tls.close()
            self._tls = None

    async def fetch(self, url: str, headers: dict[str, str] | None = None) -> FetchResult:
        """GET *url* without following redirects (with extra request *headers*, e.g. the
        conditional ones of a recrawl); raise a FetchError subclass on failure."""
        if self._http1 is None:
            raise RuntimeError("use the Fetcher inside `async with`")
        if url.startswith("http://"):
            return await self._fetch_http1(url, headers)
        if self._tls is None:  # aiohttp loads with the first https:// URL (~0.2 s of start-up)
            from crawler.fetcher_tls import TlsSession

            self._tls = TlsSession(self, self._limits, self._resolver)
        return await self._tls.fetch(url, headers)

    def _resolve_any(self, host: str, port: int) -> Any:
        return self._resolver.resolve(host, port, socket.AF_UNSPEC)

    async def _fetch_http1(self, url: str, headers: dict[str, str] | None) -> FetchResult:
        """fetch() of an http:// URL on the lean client (http1.py): same result, same errors."""
        assert self._http1 is not None
        authority, slash, rest = url[7:].partition("/")
        target = slash + rest.partition("#")[0] or "/"
        if authority.startswith("["):  # [IPv6]:port
            host, _, port_text = authority[1:].partition("]")
            port_text = port_text[1:]
        else:
            host, _, port_text = authority.partition(":")
        started = time.monotonic()
        sent_at = time.time()
        request = self._http1.request_head(authority, target, headers)
        loop = asyncio.get_running_loop()
        try:
            response = await self._http1.get(host, int(port_text or 80), request, self.max_body,
                                             loop.time() + self.timeout, self.capture)
            received = response.headers()
            raw = b"".join(response.pieces)
            body, truncated = raw, response.truncated
            encoding = received.get("Content-Encoding", "")
            if encoding:
                decoder = _Decoder(encoding, url)
                body = b"".join(decoder.feed(raw, self.max_body + 1))
                if len(body) > self.max_body:
                    body, truncated = body[:self.max_body], True
                elif not truncated:  # a body cut at the cap cannot reach its end
                    decoder.finish()
        except TimeoutError:
            raise FetchTimeout(f"{url}: no complete answer within {self.timeout:g} s",
                               "timeout") from None
        except ResponseError as exc:
            raise BadResponse(f"{url}: {exc.kind} ({exc})", exc.kind) from exc
        except OSError as exc:
            raise ConnectFailed(f"{url}: {exc}", connect_reason(exc)) from exc
        except ValueError as exc:  # a port that is not a number
            raise FetchError(f"{url}: invalid URL ({exc})", "invalid URL") from exc
        exchange = None
        if self.capture:
            exchange = Exchange(sent_at, response.peer, request, response.head_bytes(), raw)
        return FetchResult(
            url=url, status=response.status, content_type=received.get("Content-Type", ""),
            location=received.get("Location"), retry_after=received.get("Retry-After"),
            body=body, truncated=truncated, seconds=time.monotonic() - started,
            answered_at=response.answered_at, headers=received, exchange=exchange)

class _Decoder:
    """Content-Encoding gzip/deflate/identity, decoded in bounded pieces; a stream that is broken
    or ends early raises BadResponse instead of passing for a short body."""

    def __init__(self, encoding: str, url: object) -> None:
        self.url = url
        name = encoding.strip().lower()
        if name in ("", "identity"):
            self.zobj = None
        elif name in ("gzip", "x-gzip"):
            self.zobj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif name == "deflate":  # zlib-wrapped as the RFC says; raw deflate is tried on failure
            self.zobj = zlib.decompressobj(zlib.MAX_WBITS)
            self.raw_fallback = True
        else:
            raise BadResponse(f"{url}: unsupported Content-Encoding {encoding!r}")
        self.started = False

    def feed(self, data: bytes, limit: int) -> list[bytes]:
        """Decoded pieces of *data*, stopping once *limit* bytes came out (the caller cuts off)."""
        if self.zobj is None:
            return [data]
        out: list[bytes] = []
        original = data
        try:
            while data and limit > 0:
                if self.zobj.eof:
                    raise BadResponse(f"{self.url}: data after the end of the compressed body")
                piece = self.zobj.decompress(data, limit)
                out.append(piece)
                limit -= len(piece)
                data = self.zobj.unconsumed_tail
        except zlib.error as exc:
            if getattr(self, "raw_fallback", False) and not self.started:
                self.zobj, self.raw_fallback = zlib.decompressobj(-zlib.MAX_WBITS), False
                return self.feed(original, limit)
            raise BadResponse(f"{self.url}: broken compressed body ({exc})") from exc
        self.started = True
        return out

    def finish(self) -> None:
        """Raise BadResponse if the compressed stream did not reach its end."""
        if self.zobj is not None and not self.zobj.eof:
            raise BadResponse(f"{self.url}: compressed body ends early")
