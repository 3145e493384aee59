"""Damaged cache files: a clear CorruptStoreError or a counted repair, never a wrong value."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pytest

from cache import CacheError, CorruptStoreError, ForeignFileError, PersistentLRU
from cache import records as fmt
from tests.cache.lru_model import Op, model_states, read_state

CAPACITY = 10
HEADER = len(fmt.encode_header(1, {"app": "PersistentLRU", "serializer": "bytes"}))


def small_ops(seed: int, n: int = 60) -> list[Op]:
    rnd = random.Random(seed)
    ops = []
    for i in range(n):
        key = rnd.randrange(16)
        r = rnd.random()
        if r < 0.5:
            ops.append(Op("put", key, b"v%d:" % i + rnd.randbytes(rnd.randrange(12))))
        elif r < 0.9:
            ops.append(Op("get", key))
        else:
            ops.append(Op("del", key))
    return ops


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[int], dict, list[Op]]:
    """A small store, the file size after each op, and the model state after each op."""
    path = tmp_path_factory.mktemp("corrupt") / "base.lru"
    ops = small_ops(1)
    ends = []
    with PersistentLRU(path, capacity=CAPACITY, serializer="bytes", compact_min_bytes=1 << 30) as lru:
        ends.append(lru.stats().file_bytes)
        for op in ops:
            if op.kind == "put":
                lru[op.key] = op.value
            elif op.kind == "get":
                lru.get(op.key)
            elif op.key in lru:
                del lru[op.key]
            ends.append(lru.stats().file_bytes)
    return path.read_bytes(), ends, model_states(ops, CAPACITY), ops


def open_damaged(tmp_path: Path, data: bytes, **kw: object) -> PersistentLRU:
    path = tmp_path / "damaged.lru"
    for leftover in (path, Path(str(path) + ".lock")):
        leftover.unlink(missing_ok=True)
    path.write_bytes(data)
    return PersistentLRU(path, capacity=CAPACITY, serializer="bytes", **kw)


def expected_at(ends: list[int], states: dict, size: int) -> tuple[list, int]:
    """The state a file cut at *size* must show, and the torn bytes it must count.

    ends[0] is the file after the first open (header and bounds record); a cut between the header
    and it leaves an empty store (its bounds come again from the next open).
    """
    if size < ends[0]:
        return [], size - HEADER
    i = max(j for j, end in enumerate(ends) if end <= size)
    return states[i], size - ends[i]


def test_truncation_at_every_offset_gives_an_error_or_the_exact_prefix(tmp_path, store) -> None:
    data, ends, states, _ops = store
    header = HEADER
    for cut in range(len(data)):
        try:
            lru = open_damaged(tmp_path, data[:cut])
        except CorruptStoreError:
            assert cut < header, f"cut at {cut} past the header must be repaired, not refused"
            continue
        assert cut >= header, f"a header cut at {cut} must be refused"
        with lru:
            want_state, want_torn = expected_at(ends, states, cut)
            assert read_state(lru) == want_state, f"cut at {cut}"
            assert lru.stats().torn_tail_bytes == want_torn


@pytest.mark.parametrize("seed", range(3))
def test_flipped_bits_never_give_a_wrong_value(tmp_path, store, seed) -> None:
    data, ends, states, _ops = store
    rnd = random.Random(seed)
    for _ in range(150):
        damaged = bytearray(data)
        pos = rnd.randrange(len(data))
        damaged[pos] ^= 1 << rnd.randrange(8)
        check_strict_open(tmp_path, bytes(damaged), ends, states, pos)


@pytest.mark.parametrize("seed", range(3))
def test_random_spans_never_give_a_wrong_value(tmp_path, store, seed) -> None:
    data, ends, states, _ops = store
    rnd = random.Random(seed)
    for _ in range(100):
        damaged = bytearray(data)
        pos = rnd.randrange(len(data))
        span = rnd.randbytes(rnd.randrange(1, 64))
        damaged[pos : pos + len(span)] = span
        check_strict_open(tmp_path, bytes(damaged[: len(data)]), ends, states, pos)


def check_strict_open(tmp_path: Path, damaged: bytes, ends: list[int], states: dict, pos: int) -> None:
    try:
        lru = open_damaged(tmp_path, damaged)
    except CorruptStoreError:
        return
    with lru:
        got = read_state(lru)
        torn = lru.stats().torn_tail_bytes
    # Opening succeeded: the damage must have been confined to the tail, cut off and counted.
    boundary = len(damaged) - torn
    want, _ = expected_at(ends, states, boundary)
    assert torn > 0 or got == states[len(ends) - 1], f"damage at {pos} went unnoticed"
    assert got == want, f"damage at {pos}: wrong state after repair"


@pytest.mark.parametrize("seed", range(2))
def test_salvage_keeps_only_values_that_were_written(tmp_path, store, seed) -> None:
    data, ends, _states, ops = store
    written: dict[object, set[bytes]] = {}
    for op in ops:
        if op.kind == "put":
            written.setdefault(op.key, set()).add(op.value)
    rnd = random.Random(seed)
    for _ in range(100):
        damaged = bytearray(data)
        pos = rnd.randrange(ends[0], len(data))
        damaged[pos] ^= 0xFF
        with open_damaged(tmp_path, bytes(damaged), salvage=True) as lru:
            stats = lru.stats()
            for key, value in read_state(lru):
                assert value in written[key], f"salvage at {pos} produced a value never written"
            assert stats.salvaged_records_lost + stats.torn_tail_bytes > 0
        # Salvage rewrote the file: it now opens cleanly without salvage.
        with PersistentLRU(tmp_path / "damaged.lru", capacity=CAPACITY, serializer="bytes") as lru:
            assert lru.stats().torn_tail_bytes == 0


def test_every_header_byte_is_checked(tmp_path, store) -> None:
    data, ends, _states, _ops = store
    for pos in range(HEADER):
        damaged = bytearray(data)
        damaged[pos] ^= 0x01
        with pytest.raises(CorruptStoreError):
            open_damaged(tmp_path, bytes(damaged))


@pytest.mark.parametrize(
    "content",
    [b"", b"hello world\n" * 10, b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"\x89FANLOG"],
    ids=["empty", "text", "png", "magic-prefix"],
)
def test_foreign_or_empty_files_are_refused(tmp_path, content) -> None:
    with pytest.raises(CorruptStoreError):
        open_damaged(tmp_path, content)


def test_a_sqlite_file_is_refused_as_foreign(tmp_path) -> None:
    path = tmp_path / "db.lru"
    with sqlite3.connect(path) as con:
        con.execute("create table t(x)")
    con.close()
    with pytest.raises(ForeignFileError):
        PersistentLRU(path, capacity=3)


def test_a_directory_is_refused(tmp_path) -> None:
    with pytest.raises(ForeignFileError):
        PersistentLRU(tmp_path, capacity=3)


def test_damage_after_open_is_caught_at_read(tmp_path) -> None:
    path = tmp_path / "live.lru"
    with PersistentLRU(path, capacity=5, serializer="bytes") as lru:
        lru["a"] = b"A" * 100
        lru["b"] = b"B" * 100
        data = path.read_bytes()
        where = data.index(b"A" * 100) + 50
        fd = os.open(path, os.O_WRONLY)
        os.pwrite(fd, b"Z", where)
        os.close(fd)
        with pytest.raises(CorruptStoreError, match="checksum"):
            lru["a"]
        with pytest.raises(CorruptStoreError):
            lru.peek("a")
        assert lru["b"] == b"B" * 100


def test_another_app_log_and_another_serializer_are_refused(tmp_path) -> None:
    path = tmp_path / "other.lru"
    path.write_bytes(fmt.encode_header(1, {"app": "hashcache"}))
    with pytest.raises(ForeignFileError):
        PersistentLRU(path, capacity=3)
    with PersistentLRU(tmp_path / "p.lru", capacity=3, serializer="pickle") as lru:
        lru["x"] = 1
    with pytest.raises(CacheError, match="serializer"):
        PersistentLRU(tmp_path / "p.lru", capacity=3, serializer="json")
