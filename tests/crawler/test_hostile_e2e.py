"""Hostile responses through the whole engine: each gives a recorded error and the crawl goes on."""

from __future__ import annotations

import json

from crawler import CrawlConfig, crawl
from fixtures.canned import serve_canned

HOST = "127.0.0.3"


def _resp(status: str, headers: dict[str, str], body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + f"Content-Length: {headers.get('X-Len', len(body))}\r\n".encode() + \
        b"Connection: close\r\n\r\n" + body


def _html(body: bytes, **extra: str) -> bytes:
    return _resp("200 OK", {"Content-Type": "text/html; charset=utf-8", **extra}, body)


LONG = "/" + "l" * 2100
PAGES = {
    "/": _html(("".join(f'<a href="{p}">x</a>' for p in (
        "/lying", "/gzip", "/huge", "/binary", "/badutf8", "/many", LONG, "/ok")) + "").encode()),
    "/lying": _html(b"<a href=/never>short</a>", **{"X-Len": "5000"}),
    "/gzip": _html(b"\x1f\x8b" + b"\0" * 18, **{"Content-Encoding": "gzip"}),
    "/huge": _html(b"<p>" + b"y" * 300_000),
    "/binary": _html(b"\x00\x01\x02<a href=/from-binary>x</a>" + bytes(range(256)) * 4),
    "/badutf8": _html(b"<a href=/after-bad-utf8>ok</a>\xff\xfe\xc3("),
    "/many": _html(b"".join(b'<a href="/m%d">x</a>' % i for i in range(500))),
    "/after-bad-utf8": _html(b"fine"),
    "/ok": _html(b"fine too"),
}


async def test_hostile_inputs_are_recorded_and_the_crawl_goes_on(tmp_path) -> None:
    out = tmp_path / "o.jsonl"
    async with serve_canned(HOST, PAGES, default=_resp("404 Not Found", {}, b"")) as base:
        summary = await crawl([f"{base}/"], CrawlConfig(
            delay=0, max_body=100_000, max_links=100, max_retries=0, out=str(out)))
    recs = {json.loads(line)["url"].rsplit("/", 1)[1]: json.loads(line)
            for line in out.read_text().splitlines()}
    assert recs["lying"]["status"] is None and "broken" in recs["lying"]["error"]
    assert recs["gzip"]["status"] is None and recs["gzip"]["error"]
    assert recs["huge"]["content_length"] == 100_000 and "cut off" in recs["huge"]["error"]
    assert "binary" in recs["binary"]["error"] and "from-binary" not in recs
    assert "undecodable" in recs["badutf8"]["error"] and recs["after-bad-utf8"]["status"] == 200
    assert "more than 100 links" in recs["many"]["error"] and recs["many"]["links"] == 100
    assert recs["ok"]["status"] == 200 and "never" not in recs
    assert LONG[1:] not in recs and summary.invalid_links >= 1  # the URL over 2,000 characters
    assert summary.failed == 2  # the lying length and the broken gzip: no usable response
