"""The writer's preallocated, memory-mapped tail: what a crash leaves, and how it reopens.

A kill -9 leaves the file as the page cache holds it, so a copy of the file taken while the writer
is open is exactly what a crash at that moment leaves behind (the kill -9 harness in
test_lru_crash.py checks the same with real processes).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cache import CorruptStoreError, PersistentLRU
from cache import records as fmt
from cache.log import GROW
from tests.cache.lru_model import read_state


def crash_copy(lru: PersistentLRU, dest: Path) -> Path:
    """Copy *lru*'s file while it is open: the file a kill -9 right now would leave.

    The background preparation of the next GROW step is waited for, so the copy is deterministic
    (test_lru_crash.py kills real processes at any moment, that one included).
    """
    lru._log._wait_prefill()
    shutil.copyfile(lru.path, dest)
    return dest


def reopen(path: Path) -> tuple[list, int]:
    with PersistentLRU(path, capacity=50, serializer="bytes") as lru:
        return read_state(lru), lru.stats().torn_tail_bytes


@pytest.fixture
def live(tmp_path: Path):  # noqa: ANN201
    """An open writer with a few entries and reads, and its acknowledged state."""
    lru = PersistentLRU(tmp_path / "live.lru", capacity=50, serializer="bytes")
    for i in range(30):
        lru[i] = b"v%d" % i * (i + 1)
        lru.get(i // 2)
    yield lru, tmp_path
    lru.close()


def test_the_writer_keeps_a_zero_tail_and_a_clean_close_cuts_it(tmp_path: Path) -> None:
    path = tmp_path / "c.lru"
    with PersistentLRU(path, capacity=5, serializer="bytes") as lru:
        lru["a"] = b"A" * 100
        lru._log._wait_prefill()
        end = lru.stats().file_bytes
        size = os.path.getsize(path)
        assert size % GROW == 0 and size > end
        with open(path, "rb") as f:
            f.seek(end)
            assert f.read() == bytes(size - end)
    assert os.path.getsize(path) == end


def test_a_crash_with_a_zero_tail_reopens_clean_with_every_acknowledged_op(live) -> None:
    lru, tmp_path = live
    want = read_state(lru)
    copy = crash_copy(lru, tmp_path / "crashed.lru")
    assert os.path.getsize(copy) % GROW == 0 and os.path.getsize(copy) > lru.stats().file_bytes
    got, torn = reopen(copy)
    assert got == want and torn == 0  # zeros are the clean end of the log, not torn bytes
    assert os.path.getsize(copy) == lru.stats().file_bytes  # the reopen cut the tail, close kept it
    assert reopen(copy) == (want, 0)


def test_a_last_record_ending_in_zeros_is_kept(live) -> None:
    lru, tmp_path = live
    lru["z"] = b"z" + bytes(300)  # its last bytes look just like the preallocated tail
    copy = crash_copy(lru, tmp_path / "crashed.lru")
    got, torn = reopen(copy)
    assert got == read_state(lru) and torn == 0


@pytest.mark.parametrize("cut", [9, 25, 40, -1])
def test_a_torn_record_followed_by_zeros_is_cut_off_and_counted(live, cut: int) -> None:
    lru, tmp_path = live
    want = read_state(lru)
    end = lru.stats().file_bytes
    copy = crash_copy(lru, tmp_path / "crashed.lru")
    # The record the next put would store, stored only in part when the process died.
    record = fmt.encode_record(fmt.PUT, lru._log.next_seq, b"i99", b"\xff" * 60)
    part = record[:cut].rstrip(b"\0")  # torn bytes are counted up to the last one that is not zero
    with open(copy, "r+b") as f:
        f.seek(end)
        f.write(part)
    got, torn = reopen(copy)
    assert got == want and torn == len(part)
    assert reopen(copy) == (want, 0)


def test_a_damaged_record_followed_by_zeros_is_a_torn_tail(live) -> None:
    lru, tmp_path = live
    before = read_state(lru)
    end = lru.stats().file_bytes
    lru["new"] = b"N" * 80  # acknowledged, then damaged on disk: stands for a store cut off midway
    length = lru.stats().file_bytes - end
    copy = crash_copy(lru, tmp_path / "crashed.lru")
    with open(copy, "r+b") as f:
        f.seek(end + 40)
        f.write(b"\0" * 20)  # a hole inside the record, zeros after it
    got, torn = reopen(copy)
    assert got == before and torn == length


def test_zeros_in_the_middle_are_damage_not_an_end(live) -> None:
    lru, tmp_path = live
    with open(lru.path, "rb") as f:
        data = f.read()
    copy = tmp_path / "crashed.lru"
    header = len(fmt.encode_header(1, {"app": "PersistentLRU", "serializer": "bytes"}))
    middle = header + (lru.stats().file_bytes - header) // 2
    damaged = data[:middle] + bytes(64) + data[middle + 64 :]
    copy.write_bytes(damaged)
    with pytest.raises(CorruptStoreError, match="intact records follow"):
        reopen(copy)


def test_a_readonly_view_of_a_preallocated_file_sees_no_torn_tail(live) -> None:
    lru, _tmp_path = live
    with PersistentLRU(lru.path, readonly=True, serializer="bytes") as view:
        assert read_state(view) == read_state(lru)
        assert view.stats().torn_tail_bytes == 0


def test_compaction_and_growth_keep_values_and_order_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "g.lru"
    value = bytes(range(256)) * 40  # 10 KiB: a few hundred puts cross several GROW steps
    with PersistentLRU(path, capacity=20, serializer="bytes", compact_min_bytes=GROW) as lru:
        for i in range(400):
            lru[i % 37] = value[i % 256 :]
            lru.get((i * 7) % 37)
        assert lru.stats().compactions >= 1
        want = read_state(lru)
        copy = crash_copy(lru, tmp_path / "crashed.lru")
    assert reopen(path) == (want, 0)
    with PersistentLRU(copy, capacity=20, serializer="bytes") as lru:
        assert read_state(lru) == want and lru.stats().torn_tail_bytes == 0


@pytest.mark.parametrize("durability", ["fast", "fsync"])
def test_other_durabilities_reopen_from_a_zero_tail(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "d.lru"
    with PersistentLRU(path, capacity=10, serializer="bytes", durability=durability) as lru:
        for i in range(15):
            lru[i % 12] = b"x" * i
        copy = crash_copy(lru, tmp_path / "crashed.lru")
        want = read_state(lru)
    assert reopen(copy) == (want, 0)  # puts only: none is ever batched, whatever the durability


def test_a_filesystem_without_shared_maps_falls_back_to_pwrite(tmp_path: Path, monkeypatch, caplog) -> None:
    # Only a single owner can do without a map; a shared open refuses (test_shared_api.py).
    import errno
    import mmap

    def refuse(*args: object, **kwargs: object) -> mmap.mmap:
        raise OSError(errno.ENODEV, "No such device")

    path = tmp_path / "nomap.lru"
    monkeypatch.setattr(mmap, "mmap", refuse)
    with PersistentLRU(path, capacity=5, serializer="bytes", exclusive=True) as lru:
        for i in range(8):
            lru[i] = b"v" * (i * 1000)
            lru.get(i - 2)
        want = read_state(lru)
        end = lru.stats().file_bytes
        assert os.path.getsize(path) == end  # no preallocated tail without a map
    assert "appending with pwrite" in caplog.text
    monkeypatch.undo()
    assert reopen(path) == (want, 0)
