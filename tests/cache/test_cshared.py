"""cache/_cshared.c (begin, finish, follow_published compiled) against the Python methods it mirrors."""

from __future__ import annotations

import fcntl
import mmap
import os
import tempfile
import threading
import zlib
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cache import PersistentLRU, _cshared, sharedlog, sole
from cache.sharedlog import SharedRecordLog

OPENS = 3


@pytest.fixture
def two_opens(tmp_path: Path):  # noqa: ANN201
    """Two opens of one cache file (values pickled), closed after the test."""
    path = str(tmp_path / "c.lru")
    a, b = PersistentLRU(path, capacity=10), PersistentLRU(path, capacity=10)
    yield a, b
    a.close()
    b.close()
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, OPENS - 1), st.integers(0, 11), st.integers(0, 3000)),
        st.tuples(st.just("get"), st.integers(0, OPENS - 1), st.integers(0, 11), st.just(0)),
        st.tuples(st.just("del"), st.integers(0, OPENS - 1), st.integers(0, 11), st.just(0)),
        st.tuples(st.just("len"), st.integers(0, OPENS - 1), st.just(0), st.just(0)),
    ),
    max_size=60,
)


def _python_protocol(log: SharedRecordLog) -> tuple:  # noqa: ANN001
    return log.begin, log.finish, log.follow_published


def _play(work: str, ops: list[tuple[str, int, int, int]], compiled: bool, look_ahead: bool,
          durability: str = "process") -> tuple:
    """Play *ops* round the opens of one file; return every result, the log's bytes and the header.

    Compaction is due after 20 KB of dead records: a long enough run changes generations."""
    path = os.path.join(work, "c.lru")
    opens = [PersistentLRU(path, capacity=6, serializer="bytes", durability=durability,
                           compact_min_bytes=20_000) for _ in range(OPENS)]
    for lru in opens:
        sole.stop_watching(lru._watcher, lru._stop_watch)  # it must not set the protocol after us
        log = lru._log
        log._look_ahead = look_ahead
        protocol = log.protocol() if compiled else _python_protocol(log)
        lru._begin, lru._finish, lru._follow_published = protocol
    results: list[object] = []
    for kind, i, key, size in ops:
        lru = opens[i]
        if kind == "put":
            lru[key] = bytes([key]) * size
            results.append(None)
        elif kind == "get":
            results.append(lru.get(key))
        elif kind == "del":
            try:
                del lru[key]
                results.append(True)
            except KeyError:
                results.append(False)
        else:
            results.append(len(lru))
    orders = [list(lru) for lru in opens]
    header = bytes(opens[0]._log._smm[8:80])
    for lru in opens:
        lru._log.forget_recent()
    with open(path, "rb") as f:
        data = f.read(opens[0]._log.end)
    for lru in opens:
        lru.close()
    return results, orders, data, header


@settings(max_examples=100, deadline=None)
@given(_ops, st.booleans())
# Open 0's third op is a use of its newest key after open 1 used another: only begin()'s "changed"
# tells it that its newest is no longer the most recent, so that it writes the touch.
@example(ops=[("put", 0, 1, 5), ("put", 0, 2, 5), ("get", 0, 1, 0), ("get", 1, 2, 0), ("get", 0, 1, 0)],
         look_ahead=True)
def test_the_compiled_protocol_writes_and_returns_what_the_python_one_does(ops, look_ahead: bool) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        assert _play(a, ops, True, look_ahead) == _play(b, ops, False, look_ahead)


def test_both_protocols_agree_across_compactions_and_with_fsync() -> None:
    ops = [("put", i % OPENS, i % 12, 2500 + i) for i in range(60)]  # ~150 KB: several generations
    ops += [("get", i % OPENS, i % 12, 0) for i in range(20)]
    for durability in ("process", "fsync"):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            compiled = _play(a, ops, True, True, durability)
            assert compiled == _play(b, ops, False, True, durability)
            assert int.from_bytes(compiled[3][0:8], "little") > 1  # the generation changed


@pytest.mark.parametrize("compiled", [True, False])
def test_a_dead_writers_garbage_is_zeroed_by_the_next_begin(two_opens, compiled: bool) -> None:  # noqa: ANN001
    a, b = two_opens
    path = a.path
    a["k"] = b"v"
    log = b._log
    log.follow_published()
    end = log.end
    with open(path, "r+b") as f:  # a writer died mid-append: bytes past the end, DIRTY marked
        f.seek(end)
        f.write(b"\x07" * 100)
    log._smm[40:48] = (2**64 - 1).to_bytes(8, "little")
    begin, finish, _ = log.protocol() if compiled else (log.begin, log.finish, None)
    begin()
    finish()
    with open(path, "rb") as f:
        f.seek(end)
        assert f.read(100) == bytes(100)
    assert b["k"] == b"v" and a["k"] == b"v"


@pytest.mark.parametrize("compiled", [True, False])
def test_a_torn_snapshot_is_not_followed(two_opens, compiled: bool) -> None:  # noqa: ANN001
    a, b = two_opens
    a["k"] = b"v"
    log = b._log
    seen = log.end
    log._smm[72] ^= 0xFF  # the snapshot's CRC no longer matches: a read torn by a writer
    follow = log.protocol()[2] if compiled else log.follow_published
    assert follow() is False and log.end == seen
    a["j"] = b"w"  # the next finish() writes a whole snapshot again
    assert follow() is True and log.end == a._log.end


def test_an_open_without_room_for_the_compiled_protocol_runs_the_python_one(tmp_path: Path, monkeypatch) -> None:
    def refuse(*args: object) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(_cshared, "Protocol", refuse)
    path = str(tmp_path / "c.lru")
    with PersistentLRU(path, capacity=10) as a, PersistentLRU(path, capacity=10) as b:
        assert b._log.protocol()[0] == b._log.begin
        b["k"] = 1
        assert a["k"] == 1 and b["k"] == 1


def test_the_protocol_is_compiled() -> None:
    assert sharedlog._cshared is _cshared  # built: the Python methods cost ~6k instructions an operation more


@given(st.binary(max_size=200))
def test_the_snapshot_crc_is_zlibs(data: bytes) -> None:
    assert _cshared.crc32(data) == zlib.crc32(data)


def test_begin_returns_whether_the_index_changed_and_finish_publishes(tmp_path: Path) -> None:
    path = str(tmp_path / "c.lru")
    a = PersistentLRU(path, capacity=10, serializer="bytes")
    b = PersistentLRU(path, capacity=10, serializer="bytes")
    log = b._log
    begin, finish, follow_published = log.protocol()
    assert begin() is False  # nothing new: the lock taken, the header marked
    assert log._smm[40:48] == b"\xff" * 8  # DIRTY: a writer may be storing
    finish()
    mine = bytes(log._smm[24:76])
    log.begin()
    log.finish()  # the Python finish publishes the same bytes
    assert bytes(log._smm[24:76]) == mine
    a["k"] = b"v"
    assert follow_published() is True and log.end == a._log.end
    a["j"] = b"w"
    assert begin() is True  # a's put followed ahead of the lock
    finish()
    assert b.get("j") == b"w"
    a.close()
    b.close()


def test_a_lock_error_is_raised_not_ignored(two_opens) -> None:  # noqa: ANN001
    a, b = two_opens
    log = b._log
    begin, finish, _ = log.protocol()
    fd = log._lfd
    log._lfd = 2**30  # no such descriptor
    try:
        with pytest.raises(OSError):
            begin()
        with pytest.raises(OSError):
            finish()
    finally:
        log._lfd = fd
    b["k"] = 1  # the open still works
    assert a["k"] == 1


def test_a_protocol_outlives_its_closed_log_safely(two_opens) -> None:  # noqa: ANN001
    # Its own map of the header stays valid, and a call after close is an error before it touches
    # the header (the closed lock's descriptor number may name another file by now).
    a, b = two_opens
    begin, finish, follow_published = b._log.protocol()
    a["k"] = 1
    b.close()
    header = bytes(a._log._smm[:96])
    for late in (begin, finish, follow_published):
        with pytest.raises(ValueError, match="closed"):
            late()
    assert bytes(a._log._smm[:96]) == header
    a["j"] = 2


def test_a_class_attribute_of_the_log_is_refused(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(SharedRecordLog, "end", property(lambda self: 0), raising=False)
    with pytest.raises(TypeError, match="'end'"):
        _cshared.Protocol(object.__new__(SharedRecordLog), "/dev/null")


def test_threads_on_two_opens_wait_for_each_other_and_lose_nothing(tmp_path: Path) -> None:
    # Each open's operations take the writer lock; an open that finds it taken replays what the
    # holder publishes while it waits (lock_following), then holds it.
    path = str(tmp_path / "c.lru")
    opens = [PersistentLRU(path, capacity=10_000, serializer="bytes") for _ in range(2)]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(400):
                opens[n][(n, i)] = bytes([n]) * (i % 50)
                assert opens[n].get((n, i // 2)) == bytes([n]) * (i // 2 % 50)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for lru in opens:
        assert len(lru) == 800
        assert all(lru.get((n, i)) == bytes([n]) * (i % 50) for n in range(2) for i in range(400))
    for lru in opens:
        lru.close()


class _FailingFlush(mmap.mmap):
    """The shared header's map whose flush fails (a disk error at msync)."""

    def flush(self, *args: object) -> None:
        raise OSError(5, "Input/output error")


@pytest.mark.parametrize("compiled", [True, False])
def test_a_failed_header_flush_raises_and_releases_the_lock(two_opens, compiled: bool) -> None:  # noqa: ANN001
    a, b = two_opens
    log = b._log
    begin, finish, _ = log.protocol() if compiled else (log.begin, log.finish, None)
    log._flush_header = True  # durability "fsync": finish() flushes the header
    log._smm = _FailingFlush(log._lfd, mmap.PAGESIZE)
    begin()
    with pytest.raises(OSError, match="Input/output"):
        finish()
    probe = os.open(a.path + ".lock", os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fcntl.flock(log._lfd, fcntl.LOCK_UN)  # so that the closes below do not wait forever
        pytest.fail("the writer lock is still held after the failed finish()")
    finally:
        os.close(probe)
    log._flush_header = False
    a["k"] = 1
    assert b["k"] == 1
