"""The lean HTTP/1.1 path of the Fetcher (crawler/http1.py): keep-alive, framing, interim answers,
a stale idle connection, truncation and deadlines, and the heads kept for an archive. The server
here keeps connections open (the canned fixture answers once per connection)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from crawler.errors import BadResponse, FetchTimeout
from crawler.fetcher import Fetcher

HOST = "127.0.0.7"


def ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


class Server:
    """Answers each request with script(path) -> (bytes, then): then is "keep" (wait for the
    next request), "close" (close the connection) or "hang" (never answer)."""

    def __init__(self, script: Callable[[str], tuple[bytes, str]]) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.hung_up = asyncio.Event()  # a connection of ours ended

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                answer, then = self.script(head.split()[1].decode())
                if then == "hang":
                    await reader.read()
                    return
                writer.write(answer)
                await writer.drain()
                if then == "close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.hung_up.set()


@asynccontextmanager
async def serving(script: Callable[[str], tuple[bytes, str]],
                  host: str = HOST) -> AsyncIterator[tuple[str, Server]]:
    state = Server(script)
    server = await asyncio.start_server(state.handle, host, 0)
    async with server:
        yield f"http://{host}:{server.sockets[0].getsockname()[1]}", state


async def test_one_connection_serves_many_requests() -> None:
    async with serving(lambda path: (ok(path.encode()), "keep")) as (base, server):
        async with Fetcher(user_agent="t") as f:
            bodies = [(await f.fetch(f"{base}/p{i}")).body for i in range(5)]
    assert bodies == [f"/p{i}".encode() for i in range(5)]
    assert server.connections == 1 and len(server.requests) == 5


async def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    # the server drops a kept-alive connection just as the next request arrives (its idle
    # timeout): no byte of an answer came, so the GET goes again, once, on a new connection
    script = iter([(ok(b"first"), "keep"), (b"", "close"), (ok(b"second"), "keep")])
    async with serving(lambda path: next(script)) as (base, server):
        async with Fetcher(user_agent="t") as f:
            assert (await f.fetch(base + "/1")).body == b"first"
            assert (await f.fetch(base + "/2")).body == b"second"
    assert server.connections == 2 and len(server.requests) == 3


async def test_chunked_and_close_delimited_bodies_and_an_interim_answer() -> None:
    pages = {
        "/chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "keep"),
        "/until-close": (b"HTTP/1.1 200 OK\r\n\r\nno length given", "close"),
        "/interim": (b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + ok(b"final"), "keep"),
    }
    async with serving(lambda path: pages[path]) as (base, _):
        async with Fetcher(user_agent="t") as f:
            assert (await f.fetch(base + "/chunked")).body == b"hello world"
            assert (await f.fetch(base + "/until-close")).body == b"no length given"
            answer = await f.fetch(base + "/interim")
    assert (answer.status, answer.body) == (200, b"final")


async def test_a_cut_off_body_closes_its_connection() -> None:
    async with serving(lambda path: (ok(b"y" * 5000), "keep")) as (base, server):
        async with Fetcher(user_agent="t", max_body=1000) as f:
            first = await f.fetch(base + "/a")
            second = await f.fetch(base + "/b")
    assert first.truncated and first.body == b"y" * 1000 and second.truncated
    assert server.connections == 2  # the unread rest of the first body is never taken for an answer


async def test_bytes_past_the_length_are_an_error_and_late_ones_retire_the_connection() -> None:
    async with serving(lambda path: (ok(b"four") + b"and more", "keep")) as (base, _):
        async with Fetcher(user_agent="t") as f:
            with pytest.raises(BadResponse, match="bad response"):
                await f.fetch(base + "/lying")


async def test_a_reused_connection_that_never_answers_times_out() -> None:
    script = iter([(ok(b"first"), "keep"), (b"", "hang")])
    async with serving(lambda path: next(script)) as (base, server):
        async with Fetcher(user_agent="t", timeout=0.5) as f:
            assert (await f.fetch(base + "/1")).body == b"first"
            with pytest.raises(FetchTimeout):
                await f.fetch(base + "/2")
    assert server.connections == 1  # timed out, not retried on a new connection


async def test_the_exchange_kept_for_an_archive_is_what_went_over_the_wire() -> None:
    raw = gzip.compress(b"a page")
    answer = ok(raw, "Content-Encoding: gzip", "X-Odd:  spaced", "x-lower: case")
    async with serving(lambda path: (answer, "keep")) as (base, server):
        async with Fetcher(user_agent="fanmill-test", capture=True) as f:
            result = await f.fetch(base + "/p?q=1", {"If-None-Match": '"e"'})
    ex = result.exchange
    assert ex is not None and result.body == b"a page"
    assert ex.request_head == server.requests[0]  # byte for byte, as the server read it
    assert ex.request_head.startswith(f"GET /p?q=1 HTTP/1.1\r\nHost: {base[7:]}\r\n".encode())
    assert ex.payload == raw and ex.ip == HOST
    assert ex.response_head.startswith(b"HTTP/1.1 200 OK\r\n") and ex.response_head.endswith(b"\r\n\r\n")
    assert ex.response_head == answer[:answer.index(b"\r\n\r\n") + 4]  # as received, spacing kept


async def test_idle_connections_are_bounded_oldest_first() -> None:
    # a crawl moves from host to host: an idle connection past the bound is closed, the oldest
    # first, so descriptors stay bounded however many hosts a crawl meets
    answer = (ok(b"x"), "keep")
    async with serving(lambda p: answer, "127.0.0.7") as (a, first), \
            serving(lambda p: answer, "127.0.0.8") as (b, second), \
            serving(lambda p: answer, "127.0.0.9") as (c, third):
        async with Fetcher(user_agent="t", connections=2) as f:
            for base in (a, b, c):
                await f.fetch(base + "/")
            await asyncio.wait_for(first.hung_up.wait(), 30)  # ours, not the server's: it keeps
            assert not second.hung_up.is_set() and not third.hung_up.is_set()
            await f.fetch(b + "/")
    assert (first.connections, second.connections, third.connections) == (1, 1, 1)


async def test_an_idle_connection_past_keepalive_is_closed(monkeypatch) -> None:
    import crawler.http1

    monkeypatch.setattr(crawler.http1, "KEEPALIVE", 0.0)  # every idle connection is too old
    monkeypatch.setattr(crawler.http1, "SWEEP_EVERY", 0.0)
    answer = (ok(b"x"), "keep")
    async with serving(lambda p: answer, "127.0.0.7") as (a, first), \
            serving(lambda p: answer, "127.0.0.8") as (b, second):
        async with Fetcher(user_agent="t") as f:
            await f.fetch(a + "/")
            await f.fetch(b + "/")  # the next exchange sweeps a's idle connection away
            await asyncio.wait_for(first.hung_up.wait(), 30)
            assert not second.hung_up.is_set()


async def test_a_head_without_end_is_cut_off() -> None:
    endless = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100)
                                                  for i in range(5000))
    async with serving(lambda path: (endless, "keep")) as (base, _):
        async with Fetcher(user_agent="t", timeout=60) as f:
            with pytest.raises(BadResponse, match="head larger than"):
                await f.fetch(base + "/")


async def test_an_interim_answer_is_not_archived_as_the_head() -> None:
    page = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + ok(b"final")
    async with serving(lambda path: (page, "keep")) as (base, _):
        async with Fetcher(user_agent="t", capture=True) as f:
            result = await f.fetch(base + "/")
    assert result.body == b"final" and result.exchange is not None
    assert result.exchange.response_head.startswith(b"HTTP/1.1 200 OK\r\n")
