"""The fetcher against a raw loopback server that sends hostile responses byte for byte."""

from __future__ import annotations

import asyncio
import gzip
import socket
import zlib
from collections.abc import AsyncIterator

import pytest

from crawler.fetcher import BadResponse, ConnectFailed, Fetcher, FetchTimeout
from fixtures.canned import serve_canned

HOST = "127.0.0.2"


def response(status: str, headers: dict[str, str], body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"Connection: close\r\n\r\n" + body


def _encoded(encoding: str, body: bytes) -> bytes:
    return response("200 OK", {"Content-Encoding": encoding, "Content-Length": str(len(body))}, body)


BIG = b"x" * (3 * 1024 * 1024)
CANNED = {
    "/ok": response("200 OK", {"Content-Type": "text/html", "Content-Length": "5"}, b"hello"),
    "/redirect": response("302 Found", {"Location": "/ok", "Content-Length": "0"}, b""),
    "/big": response("200 OK", {"Content-Type": "text/html", "Content-Length": str(len(BIG))}, BIG),
    "/lying-long": response("200 OK", {"Content-Length": "1000"}, b"only ten b"),
    "/lying-short": response("200 OK", {"Content-Length": "4"}, b"four and more"),
    "/broken-gzip": response("200 OK", {"Content-Encoding": "gzip", "Content-Length": "20"}, b"\x1f\x8b" + b"\0" * 18),
    "/gzip": (lambda z: response("200 OK", {"Content-Encoding": "gzip", "Content-Length": str(len(z))}, z))(
        gzip.compress(b"compressed page")),
    "/gzip-truncated": _encoded("gzip", gzip.compress(b"a page cut short " * 50)[:-12]),
    "/gzip-garbage": _encoded("gzip", b"\x1f\x8b\x08\x00garbage" + bytes(32)),
    "/deflate-zlib": _encoded("deflate", zlib.compress(b"zlib-wrapped deflate")),
    "/deflate-raw": _encoded("deflate", (lambda c: c.compress(b"raw deflate") + c.flush())(
        zlib.compressobj(wbits=-zlib.MAX_WBITS))),
    "/gzip-bomb": _encoded("gzip", gzip.compress(bytes(50 * 1024 * 1024))),
    "/brotli": _encoded("br", b"\x0b\x02\x80hello\x03"),
    "/429": response("429 Too Many Requests", {"Retry-After": "3", "Content-Length": "0"}, b""),
}


@pytest.fixture
async def server() -> AsyncIterator[str]:
    # /slow never answers: a timeout must fire, whatever its length and the machine's speed
    async with serve_canned(HOST, CANNED, delays={"/slow": None}) as base:
        yield base


async def test_a_page_and_its_headers(server: str) -> None:
    async with Fetcher(user_agent="fanmill-test") as f:
        r = await f.fetch(server + "/ok")
    assert (r.status, r.body, r.content_type, r.truncated) == (200, b"hello", "text/html", False)


async def test_redirects_are_returned_not_followed(server: str) -> None:
    async with Fetcher(user_agent="t") as f:
        r = await f.fetch(server + "/redirect")
    assert r.status == 302 and r.location == "/ok"


async def test_an_oversized_body_is_cut_off_while_streaming(server: str) -> None:
    async with Fetcher(user_agent="t", max_body=1024 * 1024) as f:
        r = await f.fetch(server + "/big")
    assert r.truncated and len(r.body) == 1024 * 1024


async def test_a_body_shorter_than_its_content_length_is_an_error(server: str) -> None:
    async with Fetcher(user_agent="t") as f:
        with pytest.raises(BadResponse):
            await f.fetch(server + "/lying-long")


async def test_a_body_longer_than_its_content_length_is_an_error(server: str) -> None:
    # aiohttp's parser refuses bytes past the declared length: a lie either way is one clear error.
    async with Fetcher(user_agent="t") as f:
        with pytest.raises(BadResponse, match="lying-short"):
            await f.fetch(server + "/lying-short")


async def test_gzip_is_decoded_and_broken_gzip_is_an_error(server: str) -> None:
    async with Fetcher(user_agent="t") as f:
        assert (await f.fetch(server + "/gzip")).body == b"compressed page"
        with pytest.raises(BadResponse):
            await f.fetch(server + "/broken-gzip")


@pytest.mark.parametrize("path", ["/gzip-truncated", "/gzip-garbage", "/brotli"])
async def test_a_truncated_garbled_or_unknown_encoding_is_an_error(server: str, path: str) -> None:
    # aiohttp's own decoder passes the first two off as short (or empty) bodies without an error
    async with Fetcher(user_agent="t") as f:
        with pytest.raises(BadResponse):
            await f.fetch(server + path)


async def test_deflate_is_decoded_zlib_wrapped_or_raw(server: str) -> None:
    async with Fetcher(user_agent="t") as f:
        assert (await f.fetch(server + "/deflate-zlib")).body == b"zlib-wrapped deflate"
        assert (await f.fetch(server + "/deflate-raw")).body == b"raw deflate"


async def test_a_gzip_bomb_stops_at_max_body_of_decoded_bytes(server: str) -> None:
    async with Fetcher(user_agent="t", max_body=100_000) as f:
        result = await f.fetch(server + "/gzip-bomb")
    assert result.truncated and len(result.body) == 100_000


async def test_retry_after_is_reported(server: str) -> None:
    async with Fetcher(user_agent="t") as f:
        r = await f.fetch(server + "/429")
    assert r.status == 429 and r.retry_after == "3"


async def test_a_slow_server_times_out(server: str) -> None:
    async with Fetcher(user_agent="t", timeout=0.3) as f:
        with pytest.raises(FetchTimeout):
            await f.fetch(server + "/slow")


async def test_a_refused_connection_is_connect_failed() -> None:
    # A port bound but not listening refuses connections, and nothing else can take it meanwhile
    # (a port merely found free could be taken by another process before the fetch).
    with socket.socket() as bound:
        bound.bind((HOST, 0))
        port = bound.getsockname()[1]
        async with Fetcher(user_agent="t", timeout=60) as f:
            with pytest.raises(ConnectFailed):
                await f.fetch(f"http://{HOST}:{port}/")


async def test_https_goes_through_tls_and_a_failed_handshake_is_named(server: str) -> None:
    # https:// takes the aiohttp path (loaded at its first URL); a server that answers in plain
    # HTTP fails the handshake: one ConnectFailed naming the cause, and http:// still works
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(plain, HOST, 0)
    async with listener, Fetcher(user_agent="t", timeout=60) as f:
        port = listener.sockets[0].getsockname()[1]
        with pytest.raises(ConnectFailed) as failed:
            await f.fetch(f"https://{HOST}:{port}/ok")
        assert failed.value.reason == "TLS failure"
        assert (await f.fetch(server + "/ok")).body == b"hello"
