"""CPU per exchange of the crawler's WARC path: its own encoder against FastWARC's and warcio's.

Writes N exchanges shaped like a crawl (2-20 KB HTML pages, the headers nginx sends and the
crawler's request, a fifth of them chunked, some duplicate payloads that become revisits, a few
truncated) through crawler.warc.WarcWriter with each record encoder, reports the median CPU µs per
exchange (time.process_time, a flush every FLUSH_EVERY exchanges, as the crawler's group commits
do) and the bytes on disk, then reads every file back with both readers and checks every digest. Prints markdown;
`python -m bench.crawler.warc_costs [N]`."""

from __future__ import annotations

import io
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastwarc.stream_io import GzipWriter
from fastwarc.warc import ArchiveIterator as FastIterator
from fastwarc.warc import WarcRecord, WarcRecordType
from warcio.archiveiterator import ArchiveIterator as WarcioIterator
from warcio.statusandheaders import StatusAndHeaders, StatusAndHeadersParser
from warcio.warcwriter import WARCWriter

from bench.results import machine_line
from crawler.warc import GZIP_LEVEL, WarcWriter, sha1_label
from crawler.warc_records import DEFLATE, GzipRecords

ROUNDS = 3
FLUSH_EVERY = 256  # the crawler flushes its sinks once per group commit, not per page
_HTTP_PARSER = StatusAndHeadersParser(["HTTP/1.0", "HTTP/1.1"], verify=False)
_VOCABULARY = random.Random(0)
# 5,000 made-up words drawn with Zipf weights (rank r has weight 1/r), as words are in prose:
# a small vocabulary would make deflate unrealistically slow, random letters unrealistically fast.
_WORDS = ["".join(_VOCABULARY.choices("etaoinshrdlcumwfgypbvkjxqz", k=_VOCABULARY.randrange(2, 11)))
          for _ in range(5_000)]
_WEIGHTS = [1 / rank for rank in range(1, len(_WORDS) + 1)]


def _field_pairs(fields: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of the writer's "Name: value\\r\\n" lines."""
    return [tuple(line.split(": ", 1)) for line in fields.split("\r\n") if line]


class _OneByOne:
    """members() over a record() that writes one record to self._buffer."""

    _buffer: io.BytesIO

    def members(self, records: list[tuple]) -> list[bytes]:
        """The gzip member of each record, as crawler.warc_records.GzipRecords.members."""
        out = []
        for rec in records:
            self.record(*rec)
            out.append(self._buffer.getvalue())
            self._buffer.seek(0)
            self._buffer.truncate()
        return out


class FastWarcRecords(_OneByOne):
    """The record encoder seam of crawler.warc_records.GzipRecords on FastWARC's writer (the
    crawler's encoder until it measured ~3x the CPU per exchange of its own)."""

    _TYPES = {"warcinfo": WarcRecordType.warcinfo, "response": WarcRecordType.response,
              "request": WarcRecordType.request, "revisit": WarcRecordType.revisit}

    def __init__(self, level: int = GZIP_LEVEL) -> None:
        """Encode at gzip *level* (zlib's scale)."""
        self._buffer = io.BytesIO()
        self._gzip = GzipWriter(self._buffer, compression_level=level)

    def record(self, kind: str, record_id: str, date: str, fields: str, block: bytes,
               payload_sha1: bytes | None = None) -> None:
        """One record, one gzip member; FastWARC computes the digests."""
        rec = WarcRecord()
        rec.init_headers(self._TYPES[kind], record_urn=record_id[5:-1].encode())  # "<urn:" ">"
        headers = rec.headers
        headers["WARC-Date"] = date
        for name, value in _field_pairs(fields):
            headers.append(name, value)
        rec.set_bytes_content(block)
        rec.write(self._gzip, checksum_data=True, payload_digest=payload_sha1)
        self._gzip.finish()  # ends the gzip member


class WarcioRecords(_OneByOne):
    """The same record encoder seam on warcio's WARCWriter (gzip level 9, fixed in warcio's
    GzippingWrapper); warcio parses the HTTP head and writes it back."""

    def __init__(self, level: int = 9) -> None:
        """Encode (*level* is ignored: warcio always compresses at 9)."""
        self._buffer = io.BytesIO()
        self._writer = WARCWriter(self._buffer, gzip=True, warc_version="1.1")

    def record(self, kind: str, record_id: str, date: str, fields: str, block: bytes,
               payload_sha1: bytes | None = None) -> None:
        """One record, one gzip member; warcio computes the block digest."""
        fields = _field_pairs(fields)
        headers = StatusAndHeaders("", [("WARC-Type", kind), ("WARC-Record-ID", record_id),
                                        ("WARC-Date", date)] + fields, protocol="WARC/1.1")
        if payload_sha1 is not None:
            headers.add_header("WARC-Payload-Digest", sha1_label(payload_sha1))
        named = dict(fields)
        content_type, uri = named.get("Content-Type", ""), named.get("WARC-Target-URI", "")
        if kind == "revisit":
            # A revisit's block is the HTTP head alone; given as a payload stream, warcio 1.8
            # counts it in Content-Length but writes nothing, so it goes in parsed, as
            # create_revisit_record takes it.
            http = _HTTP_PARSER.parse(io.BytesIO(block))
            rec = self._writer.create_warc_record(uri, kind, warc_headers=headers,
                                                  warc_content_type=content_type,
                                                  http_headers=http)
        else:
            # warcio parses the head out of the block only when given an http(s) URI here; with
            # none it digests the whole block as the payload, a digest its own check rejects.
            rec = self._writer.create_warc_record(uri, kind, payload=io.BytesIO(block),
                                                  length=len(block), warc_headers=headers,
                                                  warc_content_type=content_type)
        self._writer.write_record(rec)


# (label, record encoder, gzip level)
BACKENDS = [(f"own ({DEFLATE}), gzip {GZIP_LEVEL} (the writer's default)", GzipRecords, GZIP_LEVEL),
            *((f"own ({DEFLATE}), gzip {n}", GzipRecords, n) for n in (1, 9) if n != GZIP_LEVEL),
            *((f"FastWARC, gzip {n}", FastWarcRecords, n) for n in (1, 6, 9)),
            ("warcio 1.8, gzip 9 (fixed in warcio)", WarcioRecords, 9)]


def _page(rng: random.Random, size: int) -> bytes:
    """An HTML page of about *size* bytes: navigation links and paragraphs of words."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>",
             " ".join(rng.choices(_WORDS, _WEIGHTS, k=6)), "</title></head><body><nav>"]
    parts += [f"<a href='/section/{rng.randrange(500)}/page-{rng.randrange(10_000)}.html'>"
              f"{rng.choice(_WORDS[:300])}</a>" for _ in range(30)]
    parts.append("</nav><main>")
    length = sum(map(len, parts))
    while length < size:
        para = "<p>" + " ".join(rng.choices(_WORDS, _WEIGHTS, k=rng.randrange(20, 80))) + "</p>\n"
        parts.append(para)
        length += len(para)
    parts.append("</main></body></html>")
    return "".join(parts).encode()


def exchanges(n: int, seed: int = 14) -> list[dict]:
    """*n* exchanges as the fetcher would hand them over."""
    rng = random.Random(seed)
    pages: list[bytes] = []
    out = []
    for i in range(n):
        url = f"http://127.0.0.{i % 20 + 1}:8080/section/{i % 500}/page-{i}.html"
        host = url.split("/")[2]
        if pages and rng.random() < 0.05:
            body = rng.choice(pages)  # the same payload under another URL: a revisit
        else:
            body = _page(rng, rng.randrange(2_000, 20_000))
            pages.append(body)
        truncated = rng.random() < 0.01
        payload = body[: len(body) // 2] if truncated else body
        framing = ("Transfer-Encoding: chunked\r\n" if rng.random() < 0.2
                   else f"Content-Length: {len(body)}\r\n")
        response_head = ("HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\n"
                         "Date: Sun, 29 Nov 2026 15:12:00 GMT\r\n"
                         "Content-Type: text/html; charset=utf-8\r\n" + framing +
                         "Connection: keep-alive\r\nLast-Modified: Sat, 28 Nov 2026 10:00:00 GMT\r\n"
                         f'ETag: "{i:x}-{len(body):x}"\r\nCache-Control: max-age=3600\r\n'
                         "Vary: Accept-Encoding\r\n\r\n").encode()
        request_head = (f"GET /section/{i % 500}/page-{i}.html HTTP/1.1\r\nHost: {host}\r\n"
                        "User-Agent: fanmill/0.1.0 (+https://example.org/fanmill)\r\n"
                        "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\n\r\n").encode()
        out.append({"url": url, "fetched_at": 1_795_000_000.0 + i / 100, "ip": host.split(":")[0],
                    "request_head": request_head, "response_head": response_head,
                    "payload": payload, "truncated": truncated})
    return out


def write_all(records_class, level: int, directory: str, items: list[dict]) -> float:
    """Write *items* with a WarcWriter on *records_class*; return the CPU seconds it took."""
    writer_class = type("Writer", (WarcWriter,), {"records_class": records_class})
    start = time.process_time()
    writer = writer_class(directory, info={"software": "fanmill/0.1.0", "robots": "obey"},
                          gzip_level=level)
    for i, item in enumerate(items, 1):
        writer.write_exchange(**item)
        if i % FLUSH_EVERY == 0:
            writer.flush()
    writer.close()
    return time.process_time() - start


def check_warcio(path: Path) -> tuple[int, int]:
    """(records, digest failures) reading *path* with warcio's iterator, digests checked."""
    count = bad = 0
    with open(path, "rb") as f:
        for rec in WarcioIterator(f, check_digests=True):
            stream = rec.content_stream()
            while stream.read(1 << 20):
                pass
            count += 1
            bad += rec.digest_checker.passed is False
    return count, bad


def check_fastwarc(path: Path) -> tuple[int, int]:
    """(records, digest failures) reading *path* with FastWARC: every block digest, and the
    payload digest of every response (a revisit's names another record's payload)."""
    count = bad = 0
    for rec in FastIterator(str(path), parse_http=False):
        ok = rec.verify_block_digest()
        if rec.record_type == WarcRecordType.response:
            rec.parse_http()
            ok = ok and rec.verify_payload_digest()
        count += 1
        bad += not ok
    return count, bad


def main(n: int = 5_000) -> str:
    """Run every backend ROUNDS times over the same exchanges; return the markdown report."""
    items = exchanges(n)
    payload_bytes = sum(len(i["payload"]) for i in items)
    work = Path(tempfile.mkdtemp(prefix="warc-costs-"))
    rows, checks = [], []
    try:
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in BACKENDS}
        for _ in range(ROUNDS):  # interleaved, so drift in the machine hits every backend alike
            for k, (name, cls, level) in enumerate(BACKENDS):
                directory = work / f"b{k}"
                shutil.rmtree(directory, ignore_errors=True)
                cpu[name].append(write_all(cls, level, str(directory), items))
        for k, (name, _, _) in enumerate(BACKENDS):
            files = sorted((work / f"b{k}").glob("*.warc.gz"))
            size = sum(f.stat().st_size for f in files)
            us = statistics.median(cpu[name]) / n * 1e6
            rows.append(f"| {name} | {us:.0f} | {size / 2**20:.1f} MiB "
                        f"({size / payload_bytes:.3f} of the payload bytes) |")
            cli = subprocess.run([str(Path(sys.executable).with_name("warcio")), "check",
                                  *map(str, files)], capture_output=True, text=True)
            w = [check_warcio(f) for f in files]
            fw = [check_fastwarc(f) for f in files]
            checks.append(f"| {name} | {sum(c for c, _ in w)} | `warcio check` exit "
                          f"{cli.returncode}; warcio iterator {sum(b for _, b in w)} failed | "
                          f"FastWARC {sum(b for _, b in fw)} failed of {sum(c for c, _ in fw)} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return "\n".join([
        "### WARC writing: CPU per exchange (request + response/revisit records)", "",
        machine_line(), "",
        f"{n} exchanges, {payload_bytes / 2**20:.1f} MiB of payload, 2-20 KB HTML, 20% chunked, "
        f"5% duplicate payloads, 1% truncated; median of {ROUNDS} rounds, one run, a flush every "
        f"{FLUSH_EVERY} exchanges. The crawler's own encoder deflates blocks under "
        f"{GzipRecords.small_block} bytes at {DEFLATE}'s fastest level.", "",
        "| record encoder | CPU µs / exchange | on disk |", "|---|---:|---|", *rows, "",
        "| read back | records | warcio (digests checked) | FastWARC (block + payload digests) |",
        "|---|---:|---|---|", *checks])


if __name__ == "__main__":
    print(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000))
