"""crawler.warc_process: the WARC writer in a child process writes what the in-process writer
writes, raises its errors in the parent, survives a cancelled wait, and dies with its parent."""

from __future__ import annotations

import asyncio
import os
import resource
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.warc import WarcWriter
from crawler.warc_process import (
    WarcProcess,
    decode_exchange,
    encode_exchange,
    separate_process_possible,
    split_frames,
)
from tests.crawler.test_warc_writer import INFO, T0, all_records, request, response

REPO = Path(__file__).resolve().parents[2]

exchanges = st.tuples(
    st.text(min_size=1, max_size=40),  # any text: surrogates too (they pass through unchanged)
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
    st.one_of(st.none(), st.text(min_size=1, max_size=15)),
    st.binary(max_size=300), st.binary(max_size=300), st.binary(max_size=3000), st.booleans())


@settings(max_examples=200)
@given(st.lists(exchanges, max_size=6), st.lists(st.integers(min_value=1, max_value=500),
                                                 min_size=1, max_size=8))
def test_frames_read_back_as_written_whatever_the_reads_cut(batch, cuts) -> None:
    # the child reads the stream in pieces of any size: every frame comes back whole and equal
    stream = b"".join(b"".join(encode_exchange(b"E", *ex)) for ex in batch)
    buffer, got, at, n = bytearray(), [], 0, 0
    while at < len(stream):
        step = cuts[n % len(cuts)]
        n += 1
        buffer += stream[at:at + step]
        at += step
        frames, used = split_frames(buffer)
        got += [(kind, decode_exchange(buffer, start, end)) for kind, start, end in frames]
        del buffer[:used]
    assert not buffer
    assert got == [(b"E", (url, when, ip, req, resp, payload, truncated))
                   for url, when, ip, req, resp, payload, truncated in batch]


def test_a_frame_whose_lengths_do_not_add_up_is_refused() -> None:
    frame = bytearray(b"".join(encode_exchange(b"E", "http://a/", T0, None, b"q", b"r", b"p",
                                               False)))
    frame[-1:] = b""  # the body is one byte shorter than its lengths say
    frame[1:5] = (len(frame) - 5).to_bytes(4, "little")
    [(_, start, end)], _ = split_frames(frame)
    with pytest.raises(ValueError, match="do not add up"):
        decode_exchange(frame, start, end)


def _write_all(writer, flush) -> None:
    """The same exchanges, revisits and truncation through *writer*; *flush* after each."""
    for i, (path, payload, truncated) in enumerate([
            ("/a", b"<p>a</p>" * 50, False), ("/b", b"<p>b</p>", False),
            ("/a-again", b"<p>a</p>" * 50, False), ("/cut", b"x" * 700, True),
            ("/empty", b"", False)]):
        writer.write_exchange(url=f"http://127.0.0.1:8080{path}", fetched_at=T0 + i,
                              ip="127.0.0.1" if i % 2 else None, request_head=request(path),
                              response_head=response(len(payload)), payload=payload,
                              truncated=truncated)
        if i % 2:
            flush()
    writer.write_revisit_not_modified(
        url="http://127.0.0.1:8080/b", fetched_at=T0 + 9, ip="127.0.0.1",
        request_head=request("/b"), response_head=b"HTTP/1.1 304 Not Modified\r\n\r\n",
        refers_to_date="2026-11-30T00:00:00Z")
    flush()


def _comparable(directory: Path) -> list[tuple]:
    """What must match between the two writers: all but record ids and the files' own names and
    dates (the warcinfo record's block digest and length follow from those)."""
    out = []
    for rec in all_records(directory):
        headers = {k: v for k, v in rec.headers.items()
                   if k not in ("WARC-Record-ID", "WARC-Concurrent-To", "WARC-Refers-To",
                                "WARC-Filename")}
        if rec.type == "warcinfo":
            for name in ("WARC-Date", "WARC-Block-Digest", "Content-Length"):
                headers.pop(name)
        out.append((rec.type, sorted(headers.items()), rec.head, rec.payload))
    return out


async def test_the_process_writes_what_the_writer_in_this_process_writes(tmp_path) -> None:
    near, far = tmp_path / "near", tmp_path / "far"
    with WarcWriter(str(near), info=INFO) as writer:
        _write_all(writer, writer.flush)
    process = WarcProcess(str(far), info=INFO)
    waits = []
    _write_all(process, lambda: (process.flush(), waits.append(asyncio.ensure_future(
        process.flushed()))))
    await asyncio.gather(*waits)
    process.close()
    assert _comparable(far) == _comparable(near)
    kinds = [r[0] for r in _comparable(far)]
    assert kinds.count("revisit") == 2 and kinds.count("response") == 4


def test_a_damaged_directory_raises_here_and_the_child_is_reaped(tmp_path) -> None:
    (tmp_path / "fanmill-20260101000000000000-00001.warc.gz").write_bytes(b"not gzip" * 100)
    with pytest.raises(ValueError) as near:
        WarcWriter(str(tmp_path), info=INFO)
    children = _children()
    with pytest.raises(ValueError) as far:
        WarcProcess(str(tmp_path), info=INFO)
    assert str(far.value) == str(near.value)
    assert _children() == children  # waited for: no zombie left behind


def _children() -> set[int]:
    """This process's children (zombies included), from /proc."""
    me = str(os.getpid())
    kids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                kids.add(int(entry))
    return kids


async def test_a_failed_write_in_the_child_is_raised_in_the_parent_and_writing_goes_on(
        tmp_path) -> None:
    # RLIMIT_FSIZE is inherited by the fork: the child's writes past 64 KB fail with EFBIG
    # (Python ignores SIGXFSZ), as a full disk fails them; the parent keeps its own limit
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, hard))
    try:
        process = WarcProcess(str(tmp_path), info=INFO)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    big = os.urandom(200 << 10)  # incompressible: its record passes the limit
    process.write_exchange(url="http://127.0.0.1:8080/big", fetched_at=T0, ip=None,
                           request_head=request("/big"), response_head=response(len(big)),
                           payload=big, truncated=False)
    process.flush()
    with pytest.raises(OSError, match="too large"):
        await process.flushed()
    process.write_exchange(url="http://127.0.0.1:8080/small", fetched_at=T0, ip=None,
                           request_head=request("/small"), response_head=response(5),
                           payload=b"small", truncated=False)
    process.flush()
    await process.flushed()
    process.close()
    targets = [r.headers.get("WARC-Target-URI") for r in all_records(tmp_path)]
    assert "http://127.0.0.1:8080/small" in targets
    assert "http://127.0.0.1:8080/big" not in targets


async def test_a_cancelled_wait_loses_nothing(tmp_path) -> None:
    process = WarcProcess(str(tmp_path), info=INFO)
    payloads = [os.urandom(100 << 10) for _ in range(40)]  # 4 MB: more than a socket buffer
    for i, payload in enumerate(payloads):
        process.write_exchange(url=f"http://127.0.0.1:8080/p{i}", fetched_at=T0, ip=None,
                               request_head=request(f"/p{i}"),
                               response_head=response(len(payload)), payload=payload,
                               truncated=False)
    process.flush()
    wait = asyncio.ensure_future(process.flushed())
    await asyncio.sleep(0)  # it runs to its first wait (a full socket buffer), then is cancelled
    assert not wait.done()
    wait.cancel()
    with pytest.raises(asyncio.CancelledError):
        await wait
    process.close()  # sends the rest and waits for every answer
    responses = [r for r in all_records(tmp_path) if r.type == "response"]
    assert [r.payload for r in responses] == payloads


def test_no_process_is_forked_while_another_thread_runs() -> None:
    assert separate_process_possible() == (sys.platform == "linux"
                                           and threading.active_count() == 1)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not separate_process_possible()
    finally:
        stop.set()
        other.join()


@pytest.mark.crash
def test_the_writer_process_ends_with_its_parent(tmp_path) -> None:
    # the parent forks the writer, prints its pid and blocks; after its kill -9 the writer ends
    # (its input ends; PR_SET_PDEATHSIG kills it if it was writing), so no orphan stays behind
    code = ("import sys; from crawler.warc_process import WarcProcess\n"
            f"w = WarcProcess({str(tmp_path)!r}, info={{'software': 'test'}})\n"
            "print(w._pid, flush=True); sys.stdin.read()")
    with subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as parent:
        try:
            writer_pid = int(parent.stdout.readline())
            pidfd = os.pidfd_open(writer_pid)  # opened while it lives: no pid reuse can fool it
            try:
                assert select.select([pidfd], [], [], 0)[0] == []  # alive
                parent.send_signal(signal.SIGKILL)
                parent.wait()
                # readable once the writer has ended; the bound only guards against a hang
                assert select.select([pidfd], [], [], 120)[0] == [pidfd]
            finally:
                os.close(pidfd)
        finally:
            if parent.poll() is None:
                parent.kill()
