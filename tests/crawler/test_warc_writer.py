"""crawler.warc.WarcWriter: what it writes reads back with warcio (the reader replay tools use),
byte for byte and with every digest valid; revisits; rotation; torn-tail repair; kill -9."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from warcio.archiveiterator import ArchiveIterator

from crawler.warc import IDENTICAL_PAYLOAD, NOT_MODIFIED, WarcWriter, archival_head
from crawler.warc_files import WarcDamagedError, iter_members

REPO = Path(__file__).resolve().parents[2]
INFO = {"software": "fanmill/0.1.0", "user-agent": "fanmill-test", "robots": "obey",
        "options": "--delay 1.0 --max-pages 10"}
NAME = re.compile(r"fanmill-(\d{20})-(\d{5})\.warc\.gz\Z")
T0 = 1_795_000_000.123456


@dataclass
class Rec:
    """One record as warcio reads it: WARC headers, and the block split into head and payload."""

    type: str
    headers: dict[str, str]
    head: bytes
    payload: bytes
    digest_passed: bool | None


def read_warc(path: Path) -> list[Rec]:
    """Every record of *path*, read to the end with warcio; asserts every digest it checks.

    Pass 1 checks digests (warcio parses the HTTP head and verifies block and payload digests);
    pass 2 reads each block as bytes, so heads and payloads compare byte for byte."""
    checked = []
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, check_digests=True):
            stream = rec.content_stream()
            while stream.read(1 << 16):
                pass
            assert not rec.digest_checker.problems, rec.digest_checker.problems
            checked.append(rec.digest_checker.passed)
    records = []
    with open(path, "rb") as f:
        for rec, passed in zip(ArchiveIterator(f, no_record_parse=True), checked, strict=True):
            block = rec.raw_stream.read()
            headers = dict(rec.rec_headers.headers)
            if headers["Content-Type"].startswith("application/http"):
                cut = block.index(b"\r\n\r\n") + 4
                head, payload = block[:cut], block[cut:]
            else:
                head, payload = b"", block
            records.append(Rec(headers["WARC-Type"], headers, head, payload, passed))
    return records


def files(directory: Path) -> list[Path]:
    """The WARC files of *directory*, oldest first."""
    return sorted(directory.glob("*.warc.gz"), key=lambda p: NAME.match(p.name).group(2))


def all_records(directory: Path) -> list[Rec]:
    """The records of every file in *directory*, in order."""
    return [rec for path in files(directory) for rec in read_warc(path)]


def sha1(data: bytes) -> str:
    """The labelled digest a WARC carries for *data*."""
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def request(path: str) -> bytes:
    """A request head as the fetcher sends it."""
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: fanmill-test\r\n"
            "Accept-Encoding: gzip\r\n\r\n").encode()


def response(length: int | None = None, *, chunked: bool = False, extra: str = "") -> bytes:
    """A response head: Content-Length framing, or chunked."""
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n"
    return f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n{extra}{framing}\r\n".encode()


def queue(writer: WarcWriter, path: str, payload: bytes, *, at: float = T0,
          truncated: bool = False, ip: str | None = "127.0.0.1", head: bytes | None = None) -> None:
    """write_exchange of a GET of *path* (it waits for the next flush)."""
    writer.write_exchange(
        url=f"http://127.0.0.1:8080{path}", fetched_at=at, ip=ip, request_head=request(path),
        response_head=head if head is not None else response(len(payload)), payload=payload,
        truncated=truncated)


def exchange(writer: WarcWriter, path: str, payload: bytes, *, at: float = T0,
             truncated: bool = False, ip: str | None = "127.0.0.1", head: bytes | None = None) -> str:
    """queue() then flush(); returns the WARC-Type the exchange's response record got
    ("response" or "revisit")."""
    queue(writer, path, payload, at=at, truncated=truncated, ip=ip, head=head)
    writer.flush()
    with open(writer.path, "rb") as f:
        kinds = [rec.rec_type for rec in ArchiveIterator(f) if rec.rec_type != "request"]
    return kinds[-1]


def test_exchange_reads_back_as_given(tmp_path: Path) -> None:
    body = b"<html><body>" + bytes(range(256)) * 40 + b"</body></html>"
    gzipped = b"\x1f\x8b\x08\x00" + os.urandom(3000)  # Content-Encoding bytes stay as they are
    with WarcWriter(str(tmp_path / "w"), info=INFO) as writer:
        assert exchange(writer, "/a", body) == "response"
        assert exchange(writer, "/z", gzipped, at=T0 + 1, ip=None,
                        head=response(len(gzipped), extra="Content-Encoding: gzip\r\n")) == "response"
    [path] = files(tmp_path / "w")
    info, resp_a, req_a, resp_z, req_z = read_warc(path)
    assert info.type == "warcinfo" and info.headers["Content-Type"] == "application/warc-fields"
    assert info.headers["WARC-Filename"] == path.name
    lines = info.payload.decode().split("\r\n")
    assert all(f"{k}: {v}" in lines for k, v in INFO.items())
    for resp, req, url, payload, at in ((resp_a, req_a, "/a", body, T0),
                                        (resp_z, req_z, "/z", gzipped, T0 + 1)):
        assert (resp.type, req.type) == ("response", "request")
        assert resp.payload == payload
        assert resp.headers["WARC-Payload-Digest"] == sha1(payload)
        assert resp.headers["WARC-Block-Digest"] == sha1(resp.head + payload)
        assert resp.digest_passed is True and req.digest_passed is True
        assert resp.headers["Content-Type"] == "application/http; msgtype=response"
        assert req.headers["Content-Type"] == "application/http; msgtype=request"
        assert req.head == request(url) and req.payload == b""
        assert resp.headers["WARC-Target-URI"] == req.headers["WARC-Target-URI"] == \
            f"http://127.0.0.1:8080{url}"
        assert req.headers["WARC-Concurrent-To"] == resp.headers["WARC-Record-ID"]
        date = datetime.strptime(resp.headers["WARC-Date"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert date.replace(tzinfo=UTC).timestamp() == pytest.approx(at, abs=1e-6)
        assert req.headers["WARC-Date"] == resp.headers["WARC-Date"]
        assert "WARC-Truncated" not in resp.headers
    assert resp_a.head == response(len(body))  # the head as received, byte for byte
    assert resp_a.headers["WARC-IP-Address"] == req_a.headers["WARC-IP-Address"] == "127.0.0.1"
    assert "WARC-IP-Address" not in resp_z.headers
    ids = [r.headers["WARC-Record-ID"] for r in (info, resp_a, req_a, resp_z, req_z)]
    assert len(set(ids)) == 5
    assert all(re.fullmatch(r"<urn:uuid:[0-9a-f-]{36}>", i) for i in ids)


def test_chunked_response_is_archived_with_a_content_length(tmp_path: Path) -> None:
    payload = b"de-chunked " * 500
    with WarcWriter(str(tmp_path), info=INFO) as writer:
        exchange(writer, "/c", payload, head=response(chunked=True))
    resp = read_warc(files(tmp_path)[0])[1]
    assert resp.payload == payload and resp.digest_passed is True
    assert resp.head == (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                         b"X-Crawler-Transfer-Encoding: chunked\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(payload))
    assert resp.headers["WARC-Payload-Digest"] == sha1(payload)
    with open(files(tmp_path)[0], "rb") as f:  # what replay reads: the payload, not de-chunked
        read = [r.content_stream().read() for r in ArchiveIterator(f) if r.rec_type == "response"]
    assert read == [payload]


def test_archival_head_keeps_other_heads_byte_for_byte() -> None:
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Transfer-Encoding-Note: chunked\r\n\r\n"
    assert archival_head(plain, 3) is plain
    both = b"HTTP/1.1 200 OK\ntransfer-encoding: chunked\ncontent-length: 9\n\n"  # bare LF, sic
    assert archival_head(both, 5) == (b"HTTP/1.1 200 OK\nX-Crawler-transfer-encoding: chunked\n"
                                      b"X-Crawler-content-length: 9\nContent-Length: 5\n\n")


def test_truncated_payload_is_marked_and_never_a_revisit_source(tmp_path: Path) -> None:
    part = b"x" * 1000
    with WarcWriter(str(tmp_path), info=INFO) as writer:
        assert exchange(writer, "/t1", part, truncated=True, head=response(5000)) == "response"
        assert exchange(writer, "/t2", part, truncated=True, head=response(5000)) == "response"
        assert exchange(writer, "/full", part) == "response"  # not a revisit of a truncated one
    records = read_warc(files(tmp_path)[0])
    t1, t2, full = records[1], records[3], records[5]
    assert t1.headers["WARC-Truncated"] == t2.headers["WARC-Truncated"] == "length"
    assert t1.payload == part and t1.digest_passed is True
    assert "WARC-Truncated" not in full.headers and full.type == "response"


def test_identical_payload_is_a_revisit_of_the_first(tmp_path: Path) -> None:
    body = b"<p>same page under two URLs</p>" * 50
    with WarcWriter(str(tmp_path), info=INFO) as writer:
        assert exchange(writer, "/first", body) == "response"
        assert exchange(writer, "/second", body, at=T0 + 5) == "revisit"
        assert exchange(writer, "/empty1", b"") == "response"  # empty payloads are never revisits
        assert exchange(writer, "/empty2", b"") == "response"
    records = read_warc(files(tmp_path)[0])
    first, revisit, req = records[1], records[3], records[4]
    assert revisit.type == "revisit"
    assert revisit.headers["WARC-Profile"] == IDENTICAL_PAYLOAD
    assert revisit.headers["WARC-Refers-To-Target-URI"] == "http://127.0.0.1:8080/first"
    assert revisit.headers["WARC-Refers-To-Date"] == first.headers["WARC-Date"]
    assert revisit.headers["WARC-Refers-To"] == first.headers["WARC-Record-ID"]
    assert revisit.headers["WARC-Payload-Digest"] == first.headers["WARC-Payload-Digest"] == sha1(body)
    assert revisit.head == response(len(body)) and revisit.payload == b""  # the head alone
    assert revisit.headers["WARC-Block-Digest"] == sha1(revisit.head)
    assert req.headers["WARC-Concurrent-To"] == revisit.headers["WARC-Record-ID"]
    assert [r.type for r in records[5:]] == ["response", "request", "response", "request"]


def test_revisits_are_decided_in_order_within_one_flush(tmp_path: Path) -> None:
    # exchanges wait unencoded until flush(): the ones after the first identical payload of the
    # same batch are its revisits, a truncated one never is, and an exchange that only waits
    # decides nothing yet (the index is not changed before the flush writes)
    body, other = b"<p>queued twice</p>" * 30, b"<p>once</p>" * 30
    with WarcWriter(str(tmp_path), info=INFO) as writer:
        for n, (payload, truncated) in enumerate(((body, False), (other, False), (body, True),
                                                  (body, False), (other, False))):
            writer.write_exchange(url=f"http://127.0.0.1:8080/{n}", fetched_at=T0 + n,
                                  ip="127.0.0.1", request_head=request(f"/{n}"),
                                  response_head=response(len(payload)), payload=payload,
                                  truncated=truncated)
        assert not writer._index
    records = [r for r in read_warc(files(tmp_path)[0])[1:] if r.type != "request"]
    assert [r.type for r in records] == ["response", "response", "response", "revisit", "revisit"]
    assert [r.headers["WARC-Refers-To-Target-URI"] for r in records[3:]] == [
        "http://127.0.0.1:8080/0", "http://127.0.0.1:8080/1"]
    assert records[2].headers["WARC-Truncated"] == "length"


def test_resumed_writer_revisits_what_earlier_files_hold(tmp_path: Path) -> None:
    body = b"archived before the restart " * 40
    with WarcWriter(str(tmp_path), info=INFO) as writer:
        exchange(writer, "/before", body)
    with WarcWriter(str(tmp_path), info=INFO) as writer:
        assert exchange(writer, "/after", body) == "revisit"
        assert exchange(writer, "/new", b"new" * 100) == "response"
    first, second = files(tmp_path)
    assert [NAME.match(p.name).group(2) for p in (first, second)] == ["00001", "00002"]
    revisit = read_warc(second)[1]
    assert revisit.headers["WARC-Refers-To"] == read_warc(first)[1].headers["WARC-Record-ID"]


def test_not_modified_is_a_server_not_modified_revisit(tmp_path: Path) -> None:
    head = b'HTTP/1.1 304 Not Modified\r\nETag: "abc"\r\n\r\n'
    with WarcWriter(str(tmp_path), info=INFO) as writer:
        writer.write_revisit_not_modified(
            url="http://127.0.0.1:8080/p", fetched_at=T0, ip="127.0.0.1",
            request_head=request("/p"), response_head=head,
            refers_to_date="2026-11-20T10:00:00.000000Z")
    _, revisit, req = read_warc(files(tmp_path)[0])
    assert revisit.type == "revisit" and revisit.headers["WARC-Profile"] == NOT_MODIFIED
    assert revisit.headers["WARC-Refers-To-Date"] == "2026-11-20T10:00:00.000000Z"
    assert revisit.headers["WARC-Refers-To-Target-URI"] == "http://127.0.0.1:8080/p"
    assert revisit.head == head and revisit.headers["WARC-Block-Digest"] == sha1(head)
    assert req.headers["WARC-Concurrent-To"] == revisit.headers["WARC-Record-ID"]


def test_rotation_starts_each_file_with_warcinfo_and_keeps_exchanges_whole(tmp_path: Path) -> None:
    rng = random.Random(3)
    bodies = [rng.randbytes(rng.randrange(100, 4000)) for _ in range(12)]
    with WarcWriter(str(tmp_path), info=INFO, max_size=5000) as writer:
        for i, body in enumerate(bodies):  # one batch: its writes rotate files between exchanges
            queue(writer, f"/r{i}", body)
    paths = files(tmp_path)
    assert len(paths) > 3
    assert [int(NAME.match(p.name).group(2)) for p in paths] == list(range(1, len(paths) + 1))
    got = []
    for path in paths:
        records = read_warc(path)
        assert records[0].type == "warcinfo" and records[0].headers["WARC-Filename"] == path.name
        assert [r.type for r in records[1:]] == ["response", "request"] * ((len(records) - 1) // 2)
        got += [r.payload for r in records[1::2]]
    for path in paths[:-1]:  # a file passes max_size by at most the exchange that took it there
        assert path.stat().st_size >= 5000
        with open(path, "rb") as f:
            starts = [m[0] for m in iter_members(f) if isinstance(m, tuple)]
        assert starts[-2] < 5000  # where the last exchange (response, request) starts
    assert got == bodies


def test_file_names_mode_and_directory(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "warcs"
    before = datetime.now(UTC)
    writer = WarcWriter(str(directory), info=INFO, prefix="fanmill")
    after = datetime.now(UTC)
    exchange(writer, "/", b"x")
    writer.close()
    [path] = directory.iterdir()
    stamp, serial = NAME.match(path.name).groups()
    assert serial == "00001"
    created = datetime.strptime(stamp, "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)  # UTC, to the µs
    assert before <= created <= after
    with WarcWriter(str(directory), info=INFO, prefix="other") as other:
        assert re.fullmatch(r"other-\d{20}-00001\.warc\.gz", Path(other.path).name)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644 & ~umask
    with pytest.raises(ValueError):
        exchange(writer, "/late", b"y")


def _archive_with_small_last_exchange(directory: Path) -> tuple[bytes, list[int]]:
    """A closed file: warcinfo, two exchanges, and a last small one; its bytes and the start
    offset of every gzip member."""
    with WarcWriter(str(directory), info=INFO) as writer:
        exchange(writer, "/one", b"first payload " * 30)
        exchange(writer, "/two", b"second payload " * 30)
        exchange(writer, "/last", b"last payload")
    [path] = files(directory)
    data = path.read_bytes()
    with open(path, "rb") as f:
        starts = [item[0] for item in iter_members(f) if isinstance(item, tuple)]
    path.unlink()
    return data, starts


def test_torn_tail_is_cut_at_every_offset_of_the_last_exchange(tmp_path: Path) -> None:
    data, starts = _archive_with_small_last_exchange(tmp_path / "orig")
    assert len(starts) == 7  # warcinfo + 3 x (response, request)
    last_response, last_request = starts[5], starts[6]
    for cut in range(last_response + 1, len(data)):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        torn = directory / "fanmill-20261129151200123456-00001.warc.gz"
        torn.write_bytes(data[:cut])
        with WarcWriter(str(directory), info=INFO) as writer:
            # the torn response's payload never entered the index
            assert exchange(writer, "/again", b"last payload") == (
                "revisit" if cut >= last_request else "response")
        keep = last_request if cut >= last_request else last_response
        assert torn.read_bytes() == data[:keep]
        records = read_warc(torn)
        assert [r.type for r in records] == ["warcinfo"] + ["response", "request"] * 2 + (
            ["response"] if cut >= last_request else [])
        assert records[1].payload == b"first payload " * 30
        assert records[3].payload == b"second payload " * 30
        assert len(all_records(directory)) == len(records) + 3  # the new file reads too


def test_file_torn_inside_its_warcinfo_is_removed(tmp_path: Path) -> None:
    data, starts = _archive_with_small_last_exchange(tmp_path / "orig")
    for cut in (1, 10, starts[1] - 1):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        (directory / "fanmill-20261129151200123456-00001.warc.gz").write_bytes(data[:cut])
        with WarcWriter(str(directory), info=INFO) as writer:
            exchange(writer, "/", b"x")
        [path] = files(directory)
        assert NAME.match(path.name).group(2) == "00002"
        assert [r.type for r in read_warc(path)] == ["warcinfo", "response", "request"]


def test_damage_before_the_end_raises_and_a_nul_tail_is_cut(tmp_path: Path) -> None:
    data, starts = _archive_with_small_last_exchange(tmp_path / "orig")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    path = damaged / "fanmill-20261129151200123456-00001.warc.gz"
    path.write_bytes(data[:starts[3]] + b"not gzip" + data[starts[3]:])
    with pytest.raises(WarcDamagedError, match=str(starts[3])):
        WarcWriter(str(damaged), info=INFO)
    assert path.read_bytes()[:starts[3]] == data[:starts[3]]  # nothing cut
    zeros = tmp_path / "zeros"
    zeros.mkdir()
    path = zeros / "fanmill-20261129151200123456-00001.warc.gz"
    path.write_bytes(data + bytes(4096))
    WarcWriter(str(zeros), info=INFO).close()
    assert path.read_bytes() == data


def test_a_file_another_live_writer_holds_is_left_alone(tmp_path: Path) -> None:
    body = b"written by the first writer " * 20
    first = WarcWriter(str(tmp_path), info=INFO)
    exchange(first, "/a", body)
    first.flush()
    theirs = Path(first.path)
    with open(theirs, "ab") as f:
        f.write(b"\x1f\x8b\x08")  # looks like a torn member, but its writer is alive
    size = theirs.stat().st_size
    with WarcWriter(str(tmp_path), info=INFO) as second:
        assert Path(second.path) != theirs
        assert exchange(second, "/b", body) == "revisit"  # it read what the first had flushed
    assert theirs.stat().st_size == size
    first.close()


@pytest.mark.crash
@pytest.mark.parametrize("seed", range(1, 9))
def test_kill9_while_writing_keeps_every_acknowledged_exchange(tmp_path: Path, seed: int) -> None:
    """The parent reads a seeded number of acks, waits until bytes of the next exchange reach
    the directory (so the kill lands while a record is being written: a large one reaches the
    OS in several writes), and kills; the child cannot finish first, it blocks on stdin."""
    from tests.crawler.warc_child import dir_bytes, payload

    rng = random.Random(seed)
    bound = rng.randrange(10, 40)
    kill_after = rng.randrange(1, bound)  # exchange kill_after is being written at the kill
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.crawler.warc_child", str(tmp_path), str(seed), str(bound)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        acked = []
        for _ in range(kill_after):
            line = child.stdout.readline()
            assert line.startswith("ack "), line
            acked.append(int(line.split()[1]))
            flushed = int(line.split()[2])
        while dir_bytes(str(tmp_path)) <= flushed:  # by construction: ends when the child writes
            assert child.poll() is None
        child.kill()
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stdin.close()
    WarcWriter(str(tmp_path), info=INFO).close()  # repairs
    responses = {}
    for rec in all_records(tmp_path):  # every file reads to its end, every digest valid
        if rec.type == "response":
            responses[rec.headers["WARC-Target-URI"]] = rec.payload
    assert acked == list(range(kill_after))
    for i in acked:
        assert responses[f"http://127.0.0.1:8080/p{i}"] == payload(seed, i)


@settings(max_examples=300)
@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_warc_date_is_datetimes_rounding(when: float) -> None:
    from crawler.warc_files import warc_date

    assert warc_date(when) == datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_record_ids_are_distinct_version_4_uuids() -> None:
    import uuid

    from crawler.warc import new_record_id
    from crawler.warc_records import new_record_ids

    ids = [new_record_id() for _ in range(300)] + new_record_ids(1700)
    assert len(set(ids)) == len(ids)
    for record_id in ids:
        assert record_id.startswith("<urn:uuid:") and record_id.endswith(">")
        parsed = uuid.UUID(record_id[10:-1])
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_never_reuses_the_parents_record_ids() -> None:
    # ids are drawn 256 at a time: a child forked with some in the pool (workers are forked
    # from the crawl's parent) must draw its own, and must not wait on a lock held at the fork
    from crawler.warc_records import new_record_ids

    new_record_ids(1)  # the pool now holds the rest of a run
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its ids, exit without running the parent's cleanup
        try:
            os.write(write, "\n".join(new_record_ids(300)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        child = f.read().decode().split("\n")
    os.waitpid(pid, 0)
    parent = new_record_ids(300)
    assert len(child) == 300 and not set(child) & set(parent)

