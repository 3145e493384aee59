"""A lean HTTP/1.1 client for plain http:// URLs (I/O): keep-alive connections per host, one GET
at a time on each, responses parsed by llhttp (httptools, the parser behind uvicorn).

Why not aiohttp here: on a crawl of small pages served by nginx, aiohttp's request machinery
(ClientSession._request, its request and response objects, stream readers, timers) was about half
of the crawler's CPU per page, ~150 µs of Python per request; this path does the same exchange in a
fraction of that (bench/RESULTS.md, crawler-nginx). https:// stays on aiohttp (fetcher.py): TLS,
its certificates and errors are worth its machinery.

What the crawler needs, and nothing more: a GET without following redirects; the body read to its
end, cut off at a cap (then the connection is closed, never reused); a lie about the length, in
either direction, is an error, as is a body cut short by the server; a whole-exchange deadline; the
request and response heads as they went over the wire, for an archive.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import httptools
from multidict import CIMultiDict, CIMultiDictProxy  # aiohttp's own header type (its dependency)

KEEPALIVE = 15.0  # seconds an idle connection is kept (aiohttp's keepalive_timeout): a crawl
# moves on from hosts, and each idle connection holds a file descriptor
MAX_HEAD = 256 * 1024  # bytes of status line and headers (aiohttp: 8 KiB per line, 32k fields)
SWEEP_EVERY = 1.0  # seconds between two looks for idle connections past KEEPALIVE


class ResponseError(Exception):
    """The server's answer broke HTTP/1.1 (bad framing, a lie about the length, cut short)."""

    def __init__(self, message: str, kind: str) -> None:
        """*kind* is "broken body" or "bad response" (the crawler's error names)."""
        super().__init__(message)
        self.kind = kind


class Response:
    """One response: status, reason, headers (as received, in order), the body's pieces."""

    __slots__ = ("status", "reason", "version", "raw_headers", "pieces", "size", "truncated",
                 "answered_at", "peer", "head")

    def __init__(self) -> None:
        self.status = 0
        self.reason = b""
        self.version = "1.1"
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.pieces: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.answered_at = 0.0
        self.peer: str | None = None
        self.head: bytes | None = None  # the head's bytes as received, when kept (an archive)

    def headers(self) -> CIMultiDictProxy[str]:
        """The headers as a case-insensitive multidict (latin-1 text, as aiohttp gives them)."""
        return CIMultiDictProxy(CIMultiDict([  # a list, not a generator: 1.4x faster
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in self.raw_headers]))

    def head_bytes(self) -> bytes:
        """The status line and headers, with the blank line: the response head for an archive
        (the bytes as received when kept, else rebuilt from what the parser gave)."""
        if self.head is not None:
            return self.head
        line = f"HTTP/{self.version} {self.status} ".encode() + self.reason
        return line.rstrip() + b"\r\n" + b"".join(
            name + b": " + value + b"\r\n" for name, value in self.raw_headers) + b"\r\n"


class _Connection(asyncio.Protocol):
    """One TCP connection; `exchange()` sends a request and waits for its whole response."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.cap = 0
        self.complete = False  # the current response reached its end
        self.messages = 0  # responses begun on this connection
        self.closed = False
        self.received = False  # a byte of the current response arrived
        self.keep_head = False  # keep the head's bytes as received (Response.head)
        self.expired = False  # its deadline passed
        self.keep_alive = False  # the server lets the connection serve another request
        self.head_size = 0  # bytes of the current response's head so far

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self._close()  # bytes nobody asked for (past a response's end): never reuse this
            return
        if not self.received and self.keep_head and self.response is not None:
            end = data.find(b"\r\n\r\n")  # the whole head in the first piece: nearly always
            if end >= 0:
                self.response.head = data[:end + 4]
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, ResponseError):  # raised by a callback of ours
                self._fail(exc.__context__)
            elif self.complete:
                self._fail(ResponseError(f"bytes past the end of the body ({exc})", "bad response"))
            else:
                self._fail(ResponseError(f"malformed: {exc}", "bad response"))
            return
        if self.complete:
            if self.messages > 1:  # a second response began in the same bytes
                self._fail(ResponseError("bytes past the end of the body", "bad response"))
            else:
                self._finish()

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        response = self.response
        if response is not None and response.status and not self.complete and self._ends_at_close():
            self.complete = True  # no length and not chunked: the body ends with the connection
            self._finish()
            return
        if response is not None and response.status:
            self._fail(ResponseError("the connection closed before its end", "broken body"))
        else:
            self._fail(ConnectionResetError(f"connection closed by the server ({exc or 'EOF'})"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.messages += 1

    def on_status(self, status: bytes) -> None:
        if self.response is not None:
            self.response.reason += status
            self._count_head(len(status))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response.raw_headers.append((name, value))
            self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int) -> None:
        # llhttp sets no bound on a head: a server sending headers without end is cut off here
        self.head_size += size
        if self.head_size > MAX_HEAD:
            raise ResponseError(f"response head larger than {MAX_HEAD} bytes", "bad response")

    def on_headers_complete(self) -> None:
        response = self.response
        if response is not None:
            response.status = self.parser.get_status_code()
            response.version = self.parser.get_http_version()
            response.answered_at = time.monotonic()

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is None or response.truncated:
            return
        room = self.cap - response.size
        if len(body) > room:
            response.pieces.append(body[:room])
            response.size = self.cap
            self._truncate(response)
            return
        response.pieces.append(body)
        response.size += len(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is not None and 100 <= response.status < 200 and response.status != 101:
            # an interim answer (100 Continue, 103 Early Hints): the real one follows (its head
            # is rebuilt, not kept: the bytes kept were the interim's)
            self.response, self.messages = Response(), 0
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once this returns

    # the exchange
    async def exchange(self, request: bytes, cap: int, keep_head: bool = False) -> Response:
        """Send *request*; the response, its body (as received: de-chunked, not decoded) cut
        at *cap* bytes."""
        self.response, self.cap = Response(), cap
        self.complete, self.messages, self.received, self.keep_alive = False, 0, False, False
        self.keep_head = keep_head
        self.head_size = 0
        self.waiter = self.loop.create_future()
        assert self.transport is not None
        self.transport.write(request)
        return await self.waiter

    def reusable(self) -> bool:
        """Whether another request may go on this connection."""
        return (not self.closed and self.complete and self.response is not None
                and not self.response.truncated and self.keep_alive
                and self.transport is not None and not self.transport.is_closing())

    def expire(self) -> None:
        """The exchange's deadline passed: drop the connection, the exchange fails."""
        self.expired = True
        self.abort()

    def abort(self) -> None:
        """Drop the connection at once (a deadline passed, or the caller gave up)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _ends_at_close(self) -> bool:
        names = {name.lower() for name, _ in self.response.raw_headers} if self.response else set()
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _truncate(self, response: Response) -> None:
        response.truncated = True
        self.complete = True
        self._close()  # the rest of the body is not read: this connection cannot be reused
        self._finish()

    def _finish(self) -> None:
        if self.waiter is not None and not self.waiter.done() and self.response is not None:
            self.waiter.set_result(self.response)

    def _fail(self, exc: BaseException) -> None:
        self._close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1Pool:
    """Keep-alive connections to each (host, port); `get()` does one GET exchange."""

    def __init__(self, user_agent: str, resolve: Callable[[str, int], Any],
                 max_idle: int = 100) -> None:
        """*resolve(host, port)* -> addresses (awaitable), for names that are not IP literals;
        at most *max_idle* idle connections are kept (the oldest go first), none past KEEPALIVE."""
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._idle_since: dict[_Connection, tuple[tuple[str, int], float]] = {}  # oldest first
        self._max_idle = max_idle
        self._swept = 0.0
        self._resolve = resolve
        self._fixed = (f"User-Agent: {user_agent}\r\nAccept-Encoding: gzip, deflate\r\n"
                       "Accept: */*\r\n")
        self._open: set[_Connection] = set()

    def request_head(self, host_header: str, target: str, headers: dict[str, str] | None) -> bytes:
        """The request head as sent for GET *target* on *host_header*."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) if headers else ""
        return (f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\n{self._fixed}{extra}\r\n"
                ).encode("latin-1", "replace")

    async def get(self, host: str, port: int, request: bytes, cap: int, deadline: float,
                  keep_head: bool = False) -> Response:
        """Send *request* to (host, port) on an idle connection or a new one; raise OSError
        (connect), TimeoutError (past *deadline*, loop time) or ResponseError."""
        loop = asyncio.get_running_loop()
        key = (host, port)
        self._sweep(loop.time())
        for attempt in range(2):  # an idle connection the server closed meanwhile: once more, anew
            conn, reused = (self._take(key) if attempt == 0 else None), True
            if conn is None:
                conn, reused = await self._connect(loop, host, port, deadline), False
            timer = loop.call_at(deadline, conn.expire)
            try:
                response = await conn.exchange(request, cap, keep_head)
            except BaseException as exc:
                conn.abort()
                if conn.expired:
                    raise TimeoutError from None
                if isinstance(exc, ConnectionResetError) and reused and not conn.received:
                    continue
                raise
            finally:
                timer.cancel()
                if conn.closed:
                    self._open.discard(conn)
            peer = conn.transport.get_extra_info("peername") if conn.transport else None
            response.peer = peer[0] if peer else None
            if conn.reusable():
                self._keep(conn, key, loop.time())
            else:
                conn.abort()
                self._open.discard(conn)
            return response
        raise ConnectionResetError("connection closed by the server twice")

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            del self._idle_since[conn]
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
            self._open.discard(conn)
        if idle is not None:
            del self._idle[key]  # a crawl meets many hosts: no empty list left per host
        return None

    def _keep(self, conn: _Connection, key: tuple[str, int], now: float) -> None:
        conn.waiter = None
        self._idle.setdefault(key, []).append(conn)
        self._idle_since[conn] = (key, now)
        while len(self._idle_since) > self._max_idle:
            self._evict(next(iter(self._idle_since)))

    def _sweep(self, now: float) -> None:
        """Close idle connections older than KEEPALIVE (looked for every SWEEP_EVERY)."""
        if now - self._swept < SWEEP_EVERY:
            return
        self._swept = now
        while self._idle_since:
            conn = next(iter(self._idle_since))
            if now - self._idle_since[conn][1] < KEEPALIVE:
                break
            self._evict(conn)

    def _evict(self, conn: _Connection) -> None:
        key, _ = self._idle_since.pop(conn)
        idle = self._idle[key]
        idle.remove(conn)
        if not idle:
            del self._idle[key]
        conn.abort()
        self._open.discard(conn)

    async def _connect(self, loop: asyncio.AbstractEventLoop, host: str, port: int,
                       deadline: float) -> _Connection:
        async with asyncio.timeout_at(deadline):
            addresses = [host] if _is_ip_literal(host) else \
                [a["host"] for a in await self._resolve(host, port)]
            error: OSError | None = None
            for address in addresses:  # each in turn, as aiohttp does
                try:
                    _, conn = await loop.create_connection(lambda: _Connection(loop), address, port)
                except OSError as exc:
                    error = exc
                    continue
                conn.transport.get_extra_info("socket").setsockopt(  # type: ignore[union-attr]
                    socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._open.add(conn)
                return conn
            raise error or OSError(f"{host}: no address to connect to")

    def close(self) -> None:
        """Close every connection."""
        for conn in list(self._open):
            conn.abort()
        self._open.clear()
        self._idle.clear()
        self._idle_since.clear()


def _is_ip_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True
