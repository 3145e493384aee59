"""The prefix stage of small files (issue 18): same-size files over PREFIX bytes sharing a head
(and a middle) compare the rest of their first PREFIX bytes, and only the files still alike read
the rest, from there on: no byte read twice. The report and the bytes read are the same warm and
cold, with threads and processes, and with --verify.
"""

from __future__ import annotations

import os

import pytest

from dedup import ScanOptions, cachedreads, find_duplicates, heads, prefetch, probes
from dedup.report import to_json
from fixtures.trees import build_tree

HEAD, PREFIX = heads.HEAD, probes.PREFIX
BIG = 24 * 1024  # head, middle, prefix, rest
MID = PREFIX + 476  # over PREFIX, not over PROBE_FROM: head, prefix, rest
SHORT = heads.HEAD_FROM + 288  # over HEAD_FROM, not over PREFIX: head, then whole


def _at(size: int, offset: int, fill: bytes = b"s") -> bytes:
    """*size* bytes of *fill*, with the byte at *offset* changed (none if offset is None)."""
    data = bytearray(fill * size)
    if offset is not None:
        data[offset] = ord("!")
    return bytes(data)


def _spec() -> dict:
    return {
        # BIG: a and b alike; each other differs from them at one byte, in one stage.
        "a": _at(BIG, None), "b": _at(BIG, None),
        "h": _at(BIG, 10), "m": _at(BIG, BIG // 2), "p": _at(BIG, 500), "s": _at(BIG, 4000),
        "r": _at(BIG, BIG - 100),
        # MID: c1 and c2 alike, c3 differs in the prefix, c4 in the rest.
        "c1": _at(MID, None, b"c"), "c2": _at(MID, None, b"c"), "c3": _at(MID, 700, b"c"),
        "c4": _at(MID, MID - 1, b"c"),
        # SHORT: e1 and e2 alike, e3 differs in the head.
        "e1": _at(SHORT, None, b"e"), "e2": _at(SHORT, None, b"e"), "e3": _at(SHORT, 5, b"e"),
    }


# The bytes each stage reads (see _spec): BIG: 7 heads, 6 middles (not h), 5 prefixes (not m),
# 4 rests (a, b, s, r; not p). MID: 4 heads, 4 prefixes, 3 rests (not c3). SHORT: 3 heads, 2
# whole reads.
EXPECTED = (7 * HEAD + 6 * probes.PROBE + 5 * (PREFIX - HEAD) + 4 * (BIG - PREFIX)
            + 4 * HEAD + 4 * (PREFIX - HEAD) + 3 * (MID - PREFIX)
            + 3 * HEAD + 2 * SHORT)


def _not_cached(fd, buffers, offset, flags=0):
    """preadv whose page-cache-only reads (RWF_NOWAIT) always miss."""
    if flags:
        raise BlockingIOError
    return os.preadv(fd, buffers, offset)


def _cold(monkeypatch) -> None:
    monkeypatch.setattr(cachedreads, "preadv", _not_cached)
    monkeypatch.setattr(prefetch, "is_cold", lambda paths: True)


def _json(report) -> str:
    return to_json(report).replace(f'"elapsed_s": {report.stats.elapsed_s}', '"elapsed_s": 0')


def _names(report) -> list[list[str]]:
    return sorted(sorted(os.path.basename(p) for p in g.paths) for g in report.groups)


@pytest.fixture(autouse=True)
def _nowait_not_refused(monkeypatch):
    monkeypatch.setattr(cachedreads, "refused", [False])  # a tmpfs test before may have set it


@pytest.mark.parametrize("verify", [False, True])
@pytest.mark.parametrize("cache", ["warm", "cold"])
@pytest.mark.parametrize("threads", [1, 2])
def test_files_that_differ_early_are_not_read_to_the_end(tmp_path, monkeypatch, verify, cache,
                                                         threads):
    root = build_tree(str(tmp_path / "t"), _spec())
    if cache == "cold":
        _cold(monkeypatch)
    options = ScanOptions(threads=threads, io_threads=1 if threads == 1 else 4, verify=verify)
    report = find_duplicates([root], options)
    assert _names(report) == [["a", "b"], ["c1", "c2"], ["e1", "e2"]]
    assert report.problems == ()
    assert report.stats.bytes_read == EXPECTED


def test_same_report_warm_cold_threaded_and_verified(tmp_path, monkeypatch):
    root = build_tree(str(tmp_path / "t"), _spec())
    one = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    many = find_duplicates([root], ScanOptions(threads=2, io_threads=4))
    verified = find_duplicates([root], ScanOptions(threads=2, io_threads=4, verify=True))
    _cold(monkeypatch)
    cold = find_duplicates([root], ScanOptions(threads=2, io_threads=4))
    assert _json(many) == _json(one)
    assert _json(cold) == _json(one)
    assert [g.paths for g in verified.groups] == [g.paths for g in one.groups]
    assert verified.stats.bytes_read == one.stats.bytes_read


@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_a_group_too_big_to_hold_open_reads_the_same_spans(tmp_path, monkeypatch, cache):
    # Over KEEP_OPEN files: heads, middles, prefixes and rests are jobs (or sequential reads),
    # not reads through held descriptors; the same bytes.
    count = heads.KEEP_OPEN + 6
    spec = {f"f{i:03d}": _at(BIG, HEAD + 10 * i) for i in range(count)}  # in the prefix
    spec["same1"] = spec["same2"] = _at(BIG, None)
    root = build_tree(str(tmp_path / "t"), spec)
    if cache == "cold":
        _cold(monkeypatch)
    report = find_duplicates([root], ScanOptions(threads=2, io_threads=4))
    assert _names(report) == [["same1", "same2"]]
    n = count + 2
    assert report.stats.bytes_read == n * (probes.PROBE + PREFIX) + 2 * (BIG - PREFIX)


def _rchar() -> int:
    with open("/proc/self/io", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def test_bytes_the_process_reads_are_bounded_by_the_prefix(tmp_path):
    # Ten same-size files of 60 KiB that differ in their first KiB, two alike: the process reads
    # a prefix of each (and the pair whole), not 600 KiB. Measured by the kernel (rchar).
    if not os.path.exists("/proc/self/io"):
        pytest.skip("no /proc/self/io")
    size = 60 * 1024
    spec = {f"u{i}": _at(size, 600 + i) for i in range(10)}
    spec["d1"] = spec["d2"] = _at(size, None)
    root = build_tree(str(tmp_path / "t"), spec)
    options = ScanOptions(threads=1, io_threads=1)  # no forked processes: rchar is this one's
    find_duplicates([root], options)  # imports done, as in any later run
    before = _rchar()
    report = find_duplicates([root], options)
    read = _rchar() - before
    assert _names(report) == [["d1", "d2"]]
    expected = 12 * (PREFIX + probes.PROBE) + 2 * (size - PREFIX)
    assert report.stats.bytes_read == expected
    assert expected <= read < expected + 4096
    assert read < 12 * size / 4


@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_file_shrunk_after_its_prefix_is_an_error_entry(tmp_path, monkeypatch, cache):
    root = build_tree(str(tmp_path / "t"), {n: _at(BIG, None) for n in ("a", "b", "c")})
    real = probes.read_rest

    def shrink_b_first(fd, size, start, into=None):
        if os.path.getsize(f"{root}/b") == BIG:
            os.truncate(f"{root}/b", BIG - 1)
        return real(fd, size, start, into)

    monkeypatch.setattr(heads, "read_rest", shrink_b_first)
    monkeypatch.setattr(probes, "read_rest", shrink_b_first)
    if cache == "cold":
        _cold(monkeypatch)
    report = find_duplicates([root], ScanOptions(threads=2, io_threads=4))
    assert [set(g.paths) for g in report.groups] == [{f"{root}/a", f"{root}/c"}]
    assert [p.path for p in report.problems] == [f"{root}/b"]


def _partly_cached(fd, buffers, offset, flags=0):
    """preadv whose page-cache-only reads (RWF_NOWAIT) stop at the next page boundary, as when
    a read spans a cached page and one that is not (the kernel returns what it had)."""
    if flags:
        end = (offset // 4096 + 1) * 4096
        want = sum(len(b) for b in buffers)
        if offset + want > end:
            view = memoryview(buffers[0])[: end - offset]
            return os.preadv(fd, (view,), offset)
    return os.preadv(fd, buffers, offset)


def test_a_span_across_a_cached_page_and_one_not_cached_is_read_whole(tmp_path, monkeypatch):
    # The middle probe of files of SPAN bytes starts 32 bytes before a page boundary: a
    # page-cache-only read of it comes back short (32 bytes) when only the first page is cached.
    # That is not a file that shrank: the same groups, no problem, the same bytes read as with
    # every page cached. x3 differs from x1 and x2 in the probe's part on the second page.
    size = 2 * (3 * 4096 - 32)
    at, length = probes.middle(size)
    assert at % 4096 + length > 4096
    spec = {"x1": _at(size, None), "x2": _at(size, None), "x3": _at(size, at + length - 1)}
    root = build_tree(str(tmp_path / "t"), spec)
    warm = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    monkeypatch.setattr(cachedreads, "preadv", _partly_cached)
    partly = find_duplicates([root], ScanOptions(threads=1, io_threads=1))
    assert partly.problems == ()
    assert _names(partly) == _names(warm) == [["x1", "x2"]]
    assert partly.stats.bytes_read == warm.stats.bytes_read
