"""Compaction copies live records' bytes behind new headers, carrying their CRCs (cache/compact.py)."""

from __future__ import annotations

import os
import random
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache import CorruptStoreError, PersistentLRU, StoreWriteError, _ccompact, compact
from cache import records as fmt
from cache.compact import _crc_shift, write_compacted


@pytest.mark.parametrize("n", [0, 1, 17, 4096, 65535, 65536, 65537, 200_001])
def test_crc_shift_turns_a_crc_under_one_seed_into_the_crc_under_another(n: int) -> None:
    rnd = random.Random(n)
    data = rnd.randbytes(n)
    for _ in range(3):
        a, b = rnd.getrandbits(32), rnd.getrandbits(32)
        assert zlib.crc32(data, a) ^ _crc_shift(a ^ b, n) == zlib.crc32(data, b)


def fill(lru: PersistentLRU, n: int) -> dict[int, bytes]:
    rnd = random.Random(7)
    want = {}
    for i in range(n):
        value = rnd.randbytes(rnd.randrange(0, 3000)) + b"end"
        lru[i] = value
        want[i] = value
    lru[3] = want[3] = b"overwritten"  # a dead record, and one key moved to the end
    lru.get(0)
    return want


def test_compacted_file_keeps_values_order_and_checks_clean(tmp_path: Path) -> None:
    path = tmp_path / "c.lru"
    with PersistentLRU(path, capacity=50, serializer="bytes", compact_min_bytes=1 << 30) as lru:
        want = fill(lru, 40)
        order = list(lru)
        lru.compact()
        assert list(lru) == order
        assert {k: lru.peek(k) for k in order} == want
        lru[100] = b"after"  # appends continue the new file's sequence
    with PersistentLRU(path, serializer="bytes") as again:  # a first open checks every record
        assert list(again) == order + [100]
        assert again.stats().torn_tail_bytes == 0


def record_offset(lru: PersistentLRU, key: int) -> int:
    offset, _length, _kbytes = lru._order.peek(key)
    return offset  # type: ignore[no-any-return]


def test_a_value_damaged_before_compaction_stays_detected_after_it(tmp_path: Path) -> None:
    # The copy does not check values (their CRCs are carried, not recomputed): damage must not
    # become a record whose CRC holds.
    path = tmp_path / "c.lru"
    with PersistentLRU(path, capacity=50, serializer="bytes", compact_min_bytes=1 << 30) as lru:
        want = fill(lru, 20)
        offset = record_offset(lru, 5)
        fd = os.open(path, os.O_RDWR)
        try:  # a byte of the value flips on disk while the cache is open
            at = offset + fmt.RECORD_HEADER_SIZE + len(b"i5") + 1
            os.pwrite(fd, bytes([os.pread(fd, 1, at)[0] ^ 0x40]), at)
        finally:
            os.close(fd)
        lru.compact()
        with pytest.raises(CorruptStoreError, match="checksum"):
            lru.get(5)
        assert lru.get(6) == want[6]
    with pytest.raises(CorruptStoreError, match="checksum"):
        PersistentLRU(path, serializer="bytes")


def test_a_damaged_header_fails_the_compaction_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "c.lru"
    with PersistentLRU(path, capacity=50, serializer="bytes", compact_min_bytes=1 << 30) as lru:
        fill(lru, 20)
        before = path.read_bytes()
        offset = record_offset(lru, 5)
        fd = os.open(path, os.O_RDWR)
        try:  # the key length, covered by the header CRC
            os.pwrite(fd, b"\x09", offset + 17)
        finally:
            os.close(fd)
        with pytest.raises(CorruptStoreError, match="header damaged") as info:
            lru.compact()
        assert str(offset) in str(info.value)
        assert not Path(str(path) + ".compact").exists()
        assert path.read_bytes()[: offset + 17] == before[: offset + 17]


def test_writeback_head_start_is_harmless_on_any_file(tmp_path: Path) -> None:
    from cache.compact import _start_writeback

    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x" * 10000)
        assert _start_writeback(fd, 0, 10000) in (0, None)  # 0 from Linux, None where absent
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 10000


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), ValueError("bad item")])
def test_a_failed_compaction_write_removes_its_file(tmp_path: Path, error: Exception) -> None:
    # disk full mid-write is the store's StoreWriteError naming the cache; any other failure
    # passes through; either way the half-written file is gone and nothing else is touched
    tmp, path = str(tmp_path / "c.lru.compact"), str(tmp_path / "c.lru")

    def items():
        yield fmt.PUT, b"k1", b"v" * 100_000
        raise error

    expected = StoreWriteError if isinstance(error, OSError) else type(error)
    with pytest.raises(expected) as caught:
        write_compacted(tmp, 1, {}, items(), path)
    if expected is StoreWriteError:
        assert "c.lru: compaction failed: No space left on device" in str(caught.value)
    assert os.listdir(tmp_path) == []


@given(st.integers(0, 2**32 - 1), st.integers(0, 300_000))
@settings(max_examples=200, deadline=None)
def test_the_compiled_crc_shift_is_the_python_one(delta: int, n: int) -> None:
    assert _ccompact.crc_shift(delta, n) == _crc_shift(delta, n)


def _compacted_bytes(path: Path, copy_puts, sizes: list[int], reads: list[int]) -> bytes:  # noqa: ANN001
    with PersistentLRU(path, capacity=30, serializer="bytes", compact_min_bytes=1 << 30) as lru:
        for i, size in enumerate(sizes):
            lru[i % 40] = bytes([i % 251]) * size
        for key in reads:
            lru.get(key)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(compact, "_copy_puts", copy_puts)
            patch.setattr(compact, "_CHUNK", 5000)  # chunks end between records, and often
            patch.setattr(compact, "_SLACK", 1000)  # a record over 6,000 bytes is a chunk of its own
            lru.compact()
        lru[1000] = b"after"
    return path.read_bytes()


@given(st.lists(st.integers(0, 9000), max_size=80), st.lists(st.integers(0, 45), max_size=20))
@settings(max_examples=40, deadline=None)
def test_the_compiled_copy_writes_what_the_python_loop_writes(sizes: list[int], reads: list[int]) -> None:
    with tempfile.TemporaryDirectory() as work:
        compiled = _compacted_bytes(Path(work, "c.lru"), _ccompact.copy_puts, sizes, reads)
        python = _compacted_bytes(Path(work, "p.lru"), None, sizes, reads)
    assert compiled == python


def test_the_copy_is_compiled() -> None:
    assert compact._copy_puts is _ccompact.copy_puts  # built: the Python loop is 6x its time


def test_compaction_repoints_every_key_in_place(tmp_path: Path) -> None:
    path = tmp_path / "c.lru"
    with PersistentLRU(path, capacity=50, serializer="bytes", compact_min_bytes=1 << 30) as lru:
        want = fill(lru, 40)
        order = list(lru)
        weights = {k: lru._order.entries[k][1] for k in order}
        lru.compact()
        assert list(lru) == order
        assert {k: lru._order.entries[k][1] for k in order} == weights
        assert {k: lru.peek(k) for k in order} == want  # each read checks its record's key and CRCs
