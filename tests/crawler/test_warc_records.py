"""crawler.warc_records (the record encoder) and WarcWriter's batching: every digest verifies in
FastWARC's reader too, with ISA-L's deflate and with zlib's; exchanges wait for flush() in order;
a failed write forgets what it did not write."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from fastwarc.warc import ArchiveIterator, WarcRecordType
from hypothesis import given, settings
from hypothesis import strategies as st

import crawler.warc_records as warc_records
from crawler.warc import WarcWriter
from crawler.warc_records import GzipRecords, deflate_level, sha1_base32, sha1_base32_many
from tests.crawler.test_warc_writer import (
    INFO,
    T0,
    exchange,
    files,
    queue,
    read_warc,
    request,
    response,
)


def write_mixed(directory: Path) -> list[bytes]:
    """Small and large payloads, a chunked one, a revisit, a truncated one and a 304; return
    the payloads of the response records in order."""
    small, large = b"<p>small page</p>" * 20, os.urandom(1000) * 20  # under and over small_block
    with WarcWriter(str(directory), info=INFO) as writer:
        assert exchange(writer, "/small", small) == "response"
        assert exchange(writer, "/large", large) == "response"
        assert exchange(writer, "/chunked", b"x" * 9000, head=response(chunked=True)) == "response"
        assert exchange(writer, "/again", small) == "revisit"
        assert exchange(writer, "/cut", large[:5000], truncated=True) == "response"
        writer.write_revisit_not_modified(
            url="http://127.0.0.1:8080/small", fetched_at=T0 + 9, ip=None,
            request_head=request("/small"), response_head=b"HTTP/1.1 304 Not Modified\r\n\r\n",
            refers_to_date=None)
    return [small, large, b"x" * 9000, large[:5000]]


def check_with_fastwarc(path: Path) -> list[str]:
    """Record types of *path* read with FastWARC; asserts every block digest and every response's
    payload digest."""
    kinds = []
    for rec in ArchiveIterator(str(path), parse_http=False):
        assert rec.verify_block_digest(), rec.headers["WARC-Record-ID"]
        if rec.record_type == WarcRecordType.response:
            rec.parse_http()
            assert rec.verify_payload_digest(), rec.headers["WARC-Record-ID"]
        kinds.append(rec.headers["WARC-Type"])
    return kinds


@pytest.mark.parametrize("deflate", ["isal", "zlib"])
def test_records_verify_in_warcio_and_fastwarc(tmp_path: Path, monkeypatch, deflate) -> None:
    if deflate == "zlib":
        monkeypatch.setattr(warc_records, "_deflate", zlib)
        monkeypatch.setattr(warc_records, "DEFLATE", "zlib")
    elif warc_records.DEFLATE != "isal":
        pytest.skip("python-isal is not installed")
    payloads = write_mixed(tmp_path)
    [path] = files(tmp_path)
    records = read_warc(path)  # warcio, digests checked
    assert [r.payload for r in records if r.type == "response"] == payloads
    assert check_with_fastwarc(path) == ["warcinfo"] + ["response", "request"] * 3 + [
        "revisit", "request", "response", "request", "revisit", "request"]
    cli = subprocess.run([str(Path(sys.executable).with_name("warcio")), "check", str(path)],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    with open(path, "rb") as f:  # one gzip member per record
        assert sum(1 for _ in iter(lambda: _member(f), None)) == len(records)


def _member(f) -> bytes | None:
    """Read one whole gzip member of *f* (None at the end)."""
    inflate = zlib.decompressobj(wbits=31)
    start = f.tell()
    data = f.read()
    if not data:
        return None
    out = inflate.decompress(data)
    assert inflate.eof
    f.seek(start + len(data) - len(inflate.unused_data))
    return out


def test_sha1_base32_is_rfc_4648_base32() -> None:
    for _ in range(2000):
        digest = os.urandom(20)
        assert sha1_base32(digest) == base64.b32encode(digest).decode()
    assert sha1_base32(bytes(20)) == "A" * 32 and sha1_base32(b"\xff" * 20) == "7" * 32
    digests = [os.urandom(20) for _ in range(300)]
    assert sha1_base32_many(digests) == [base64.b32encode(d).decode() for d in digests]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=20, max_size=20), max_size=70), st.sampled_from([0, 1, 250]))
def test_sha1_base32_many_is_base32_of_each(digests: list[bytes], before: int) -> None:
    # every size of the last run of digests, also past a first full run (see _SPREAD_RUN)
    digests = [bytes([i % 256]) * 20 for i in range(before)] + digests
    assert warc_records._SPREAD_RUN == 256
    assert sha1_base32_many(digests) == [base64.b32encode(d).decode() for d in digests]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([0, 1, 2, 1000, 0xFFFE, 0xFFFF, 0x10000, 0x1FFFE, 0x1FFFF, 0x20000]),
       st.integers(-2, 2), st.binary(max_size=50))
def test_stored_members_are_gzip_members_of_their_bytes(size: int, shift: int, tail: bytes) -> None:
    # sizes at and around the stored block's limit (65,535 bytes) and its multiples
    data = os.urandom(max(size + shift, 0))
    member = warc_records.stored_member(data)
    assert zlib.decompress(member, 31) == data
    inflate = zlib.decompressobj(31)  # one member ends where it says: the next one follows
    assert inflate.decompress(member + warc_records.stored_member(tail)) == data
    assert inflate.eof and zlib.decompress(inflate.unused_data, 31) == tail


def test_request_records_are_stored_and_responses_deflated(tmp_path: Path) -> None:
    with WarcWriter(str(tmp_path), info=INFO) as writer:
        queue(writer, "/p", b"<p>compressible</p>" * 200)
    with open(files(tmp_path)[0], "rb") as f:
        members = iter_members_raw(f)
    _, response, request = members  # warcinfo, response, request
    assert request[10] == 0x01 and response[10] != 0x01  # BFINAL + stored, vs a Huffman block
    assert len(request) > len(zlib.decompress(request, 31))  # stored: never smaller
    assert len(response) * 4 < len(zlib.decompress(response, 31))


def iter_members_raw(f) -> list[bytes]:
    """The raw bytes of each gzip member of *f*, in order."""
    data, out = f.read(), []
    while data:
        inflate = zlib.decompressobj(31)
        inflate.decompress(data)
        end = len(data) - len(inflate.unused_data)
        out.append(data[:end])
        data = data[end:]
    return out


def test_gzip_levels_follow_zlibs_scale() -> None:
    with pytest.raises(ValueError):
        deflate_level(10)
    with pytest.raises(ValueError):
        GzipRecords(-1)
    assert deflate_level(0) == 0
    assert deflate_level(9) == (9 if warc_records.DEFLATE == "zlib" else 3)


def test_exchanges_wait_for_flush_and_keep_their_order(tmp_path: Path) -> None:
    writer = WarcWriter(str(tmp_path), info=INFO)
    writer.flush()
    path = Path(writer.path)
    size = path.stat().st_size  # the warcinfo record alone
    for i in range(5):
        queue(writer, f"/p{i}", b"page %d" % i)
    queue(writer, "/dup", b"page 3")
    assert path.stat().st_size == size
    writer.flush()
    assert path.stat().st_size > size
    records = read_warc(path)
    assert [r.headers["WARC-Target-URI"].rsplit("/", 1)[1] for r in records[1::2]] == [
        "p0", "p1", "p2", "p3", "p4", "dup"]
    assert [r.type for r in records[1::2]] == ["response"] * 5 + ["revisit"]
    writer.close()


def test_a_failed_write_forgets_the_responses_it_did_not_write(tmp_path: Path) -> None:
    writer = WarcWriter(str(tmp_path), info=INFO)
    exchange(writer, "/ok", b"written")
    writer.flush()
    written = Path(writer.path).stat().st_size
    queue(writer, "/lost", b"never written")
    queue(writer, "/lost-too", b"never written either")

    class FullDisk:
        """The open file, whose writes fail as on a full disk."""

        def __init__(self, file) -> None:
            self.file = file

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            self.file.close()

    writer._file = FullDisk(writer._file)
    with pytest.raises(OSError):
        writer.flush()
    assert Path(files(tmp_path)[0]).stat().st_size == written  # the partial exchange is cut
    # no revisit may refer to a response that is not on disk
    assert exchange(writer, "/again", b"never written") == "response"
    assert exchange(writer, "/ok-again", b"written") == "revisit"
    writer.close()
    assert [r.type for r in read_warc(files(tmp_path)[-1])] == [
        "warcinfo", "response", "request", "revisit", "request"]
