"""`--warc` end to end: the archive read back with warcio holds every exchange as the server sent
it, robots.txt included; identical payloads are revisits; cut-off bodies say so; a kill -9 and a
resume leave files that read to their end and a response record for every URL marked fetched."""

from __future__ import annotations

import gzip
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler import CrawlConfig, crawl
from tests.crawler.loopback_site import Page, links, serve
from tests.crawler.test_crash_resume import _committed, _lines, _run_crawl

BIG = "x" * 5000


def read_warc(directory: Path) -> list[tuple[str, dict[str, str], bytes, bytes]]:
    """(type, WARC headers, HTTP head, payload as received) of every record, files in name order."""
    out = []
    for path in sorted(directory.glob("*.warc.gz")):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, check_digests="raise"):
                headers = dict(rec.rec_headers.headers)
                http = rec.http_headers.to_bytes() if rec.http_headers else b""
                out.append((rec.rec_type, headers, http, rec.raw_stream.read()))
    return out


def _site() -> dict:
    return {
        (0, "/robots.txt"): Page(body="User-agent: *\nDisallow: /no\n", content_type="text/plain"),
        (0, "/"): Page(body=links("/a", "/same1", "/same2", "/big", "/no")),
        (0, "/a"): Page(body="<p>a</p>"),
        (0, "/same1"): Page(body="<p>the same bytes</p>"),
        (0, "/same2"): Page(body="<p>the same bytes</p>"),
        (0, "/big"): Page(body=BIG),
    }


async def test_every_exchange_is_archived_as_sent(tmp_path) -> None:
    warc = tmp_path / "warc"
    async with serve(_site(), hosts=1) as site:
        summary = await crawl([site.url(0, "/")], CrawlConfig(
            delay=0, warc=str(warc), max_body=4096))
    assert summary.pages == 5
    files = sorted(warc.glob("fanmill-*-00001.warc.gz"))
    assert len(files) == 1
    records = read_warc(warc)
    assert records[0][0] == "warcinfo" and b"fanmill" in records[0][3]
    responses = {h["WARC-Target-URI"]: (kind, h, head, body) for kind, h, head, body in records
                 if kind in ("response", "revisit")}
    requests = {h["WARC-Concurrent-To"]: h for kind, h, _, _ in records if kind == "request"}
    assert set(responses) == {site.url(0, p) for p in
                              ("/robots.txt", "/", "/a", "/same1", "/same2", "/big")}
    for url, (_kind, headers, head, _body) in responses.items():
        assert requests[headers["WARC-Record-ID"]]["WARC-Target-URI"] == url  # tied together
        assert headers["WARC-IP-Address"] == site.hosts[0]
        assert headers["WARC-Payload-Digest"].startswith("sha1:")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert responses[site.url(0, "/a")][3] == b"<p>a</p>"
    assert responses[site.url(0, "/robots.txt")][3] == b"User-agent: *\nDisallow: /no\n"
    kinds = sorted(responses[site.url(0, p)][0] for p in ("/same1", "/same2"))
    assert kinds == ["response", "revisit"]  # the second identical payload refers to the first
    first, second = sorted((responses[site.url(0, p)] for p in ("/same1", "/same2")),
                           key=lambda r: r[0])
    assert second[1]["WARC-Profile"].endswith("/revisit/identical-payload-digest")
    assert second[1]["WARC-Refers-To-Target-URI"] == first[1]["WARC-Target-URI"]
    assert second[1]["WARC-Refers-To-Date"] == first[1]["WARC-Date"]
    big = responses[site.url(0, "/big")]
    assert big[1]["WARC-Truncated"] == "length" and big[3] == BIG[:4096].encode()
    result = subprocess.run([sys.executable, "-m", "warcio.cli", "check", *map(str, files)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_gzip_answer_is_archived_compressed_as_received(tmp_path) -> None:
    raw = gzip.compress(b"<html><body>" + b"squeeze " * 400 + b"</body></html>")
    pages = {(0, "/"): Page(raw=raw, headers={"Content-Encoding": "gzip"})}
    async with serve(pages, hosts=1) as site:
        await crawl([site.url(0, "/")], CrawlConfig(delay=0, warc=str(tmp_path)))
    (response,) = [r for r in read_warc(tmp_path) if r[0] == "response"
                   and r[1]["WARC-Target-URI"] == site.url(0, "/")]
    assert response[3] == raw and b"Content-Encoding: gzip" in response[2]


@pytest.mark.crash
@pytest.mark.parametrize("kill_after", [4, 11])
async def test_kill_9_and_resume_keep_every_fetched_url_archived(tmp_path, kill_after) -> None:
    # --items is a sink like --warc: flushed before the state marks a URL fetched, so after the
    # kill and the resume every URL the state holds has its response record and its item
    pages = {(0, "/"): Page(body=links(*[f"/p{i}" for i in range(30)]))}
    pages.update({(0, f"/p{i}"): Page(body=f"<p>page {i}</p>" * (1 + i % 4)) for i in range(30)})
    out, state, warc = tmp_path / "out.jsonl", tmp_path / "state.db", tmp_path / "warc"
    items = tmp_path / "items.jsonl"
    async with serve(pages, hosts=1) as site:
        args = [site.url(0, "/"), "--delay", "0", "--state", str(state), "--out", str(out),
                "--warc", str(warc), "--handler", "tests.crawler.item_handler:item",
                "--items", str(items), "-q"]
        site.hold_when = lambda: _lines(out) >= kill_after + 2  # the stop point, in records
        assert await _run_crawl(args, state, kill_after) == -signal.SIGKILL
        site.hold_when = None
        site.released.set()
        assert await _run_crawl(args, state) == 0
    files = sorted(warc.glob("*.warc.gz"))
    assert len(files) == 2  # the resumed crawl began a file of its own
    archived = {h["WARC-Target-URI"] for kind, h, _, _ in read_warc(warc)
                if kind in ("response", "revisit")}
    with sqlite3.connect(state) as conn:
        fetched = {url for (url,) in conn.execute("SELECT url FROM urls WHERE status = 'fetched'")}
    conn.close()
    assert len(fetched) == 31 and fetched <= archived
    assert fetched <= {json.loads(line)["url"] for line in items.read_text().splitlines()}
    assert _committed(state) == fetched


def test_a_damaged_warc_directory_is_one_clear_error_and_nothing_is_cut(tmp_path, capsys) -> None:
    from crawler.cli import main

    warc = tmp_path / "warc"
    warc.mkdir()
    damaged = warc / "fanmill-20261129000000000000-00001.warc.gz"
    damaged.write_bytes(b"not gzip at all, and not a torn tail either" * 100)
    before = damaged.read_bytes()
    code = main(["http://127.0.0.1:9/", "--warc", str(warc), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("crawl: error: cannot use --warc") and "Traceback" not in err
    assert damaged.read_bytes() == before
