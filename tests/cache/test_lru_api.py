"""PersistentLRU's contract beyond the model: bounds, errors, locking, threads, injected write failures."""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache import (
    CacheError,
    PersistentLRU,
    StoreLockedError,
    StoreWriteError,
    ValueTooLargeError,
)
from cache.encoding import decode_key, encode_key
from cache.log import GROW
from cache.order import RecencyOrder


def test_file_and_lock_are_private(tmp_path: Path) -> None:
    with PersistentLRU(tmp_path / "c.lru", capacity=2) as lru:
        lru["a"] = 1
    for name in ("c.lru", "c.lru.lock"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600


def test_hit_and_overwrite_count_as_use_but_in_does_not(tmp_path: Path) -> None:
    with PersistentLRU(tmp_path / "c.lru", capacity=3) as lru:
        for k in "abc":
            lru[k] = k
        assert "a" in lru
        assert list(lru) == ["a", "b", "c"]
        lru["a"]
        assert list(lru) == ["b", "c", "a"]
        lru["b"] = "B"
        assert list(lru) == ["c", "a", "b"]
        lru["d"] = "d"
        assert list(lru) == ["a", "b", "d"]
        s = lru.stats()
        assert (s.hits, s.misses, s.evictions, s.entries) == (1, 0, 1, 3)
        assert lru.get("zz") is None and lru.stats().misses == 1


def test_max_bytes_is_exact_and_a_too_large_value_is_refused(tmp_path: Path) -> None:
    evicted = []
    with PersistentLRU(
        tmp_path / "c.lru", max_bytes=1000, serializer="bytes", on_evict=evicted.append
    ) as lru:
        for i in range(10):
            lru[i] = b"x" * 200
            assert lru.stats().bytes <= 1000
        assert evicted == list(range(6))
        with pytest.raises(ValueTooLargeError):
            lru["big"] = b"x" * 1001
        assert len(lru) == 4 and "big" not in lru  # nothing was evicted for the refused value


def test_the_eviction_callback_gets_each_key_as_it_was_put(tmp_path: Path) -> None:
    # True and 1 share an encoding (bool counts as int); the callback gets the object the caller put.
    evicted: list[object] = []
    with PersistentLRU(tmp_path / "c.lru", capacity=2, serializer="bytes", on_evict=evicted.append) as lru:
        lru[True] = b"a"
        lru[("t", 2)] = b"b"
        lru["c"] = b"c"
        lru["d"] = b"d"
        assert evicted == [True, ("t", 2)] and type(evicted[0]) is bool
        assert list(lru) == ["c", "d"]


def test_a_second_open_shares_the_file_and_exclusive_opens_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.lru"
    with PersistentLRU(path, capacity=3) as lru:
        lru["a"] = 1
        lru["b"] = 2
        with PersistentLRU(path, capacity=3) as other:  # a second open: one cache, one order
            assert other["a"] == 1
            other["c"] = 3
        assert list(lru) == ["b", "a", "c"] and lru["c"] == 3
        with pytest.raises(StoreLockedError):
            PersistentLRU(path, capacity=3, exclusive=True)
        with PersistentLRU(path, readonly=True) as view:
            assert view["a"] == 1 and list(view) == ["b", "a", "c"]  # a snapshot: reads do not move
            with pytest.raises(StoreWriteError):
                view["c"] = 3
    with PersistentLRU(path, capacity=3, exclusive=True) as again:  # nobody else has it open now
        assert again["b"] == 2
        with pytest.raises(StoreLockedError):
            PersistentLRU(path, capacity=3)


def test_disk_full_during_a_put_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "c.lru"
    fail = {"on": False}

    def reserve(fd: int, offset: int, length: int) -> None:
        if fail["on"]:
            os.ftruncate(fd, offset + length // 2)  # half the extension happened, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        os.posix_fallocate(fd, offset, length)

    with PersistentLRU(path, capacity=5, _reserve=reserve) as lru:
        lru["a"] = "A"
        lru._log._wait_prefill()  # the next GROW step, prepared in the background, is in place
        size = os.path.getsize(path)
        fail["on"] = True
        with pytest.raises(StoreWriteError, match="No space"):
            lru["b"] = "B" * (2 * GROW)  # beyond the preallocated step: the file must grow
        assert "b" not in lru and lru["a"] == "A"
        assert os.path.getsize(path) == size  # the half extension was taken back
        lru["c"] = "C"  # a small put still fits the space reserved before
        fail["on"] = False
        lru["d"] = "D" * (2 * GROW)
    with PersistentLRU(path, capacity=5) as lru:
        assert dict((k, lru.peek(k)) for k in lru) == {"a": "A", "c": "C", "d": "D" * (2 * GROW)}
        assert lru.stats().torn_tail_bytes == 0


def test_disk_full_when_the_file_grows_under_reads_is_a_clear_error(tmp_path: Path) -> None:
    fail = {"on": False}

    def reserve(fd: int, offset: int, length: int) -> None:
        if fail["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        os.posix_fallocate(fd, offset, length)

    path = tmp_path / "c.lru"
    with PersistentLRU(path, capacity=5, serializer="bytes", _reserve=reserve) as lru:
        lru["a"], lru["b"] = b"A", b"B"
        fail["on"] = True
        hits = 0
        with pytest.raises(StoreWriteError, match="No space"):
            for i in range(GROW):  # touches fill the reserved step, then the next one is refused
                lru.get("ab"[i % 2])
                hits += 1
        order = list(lru)
    with PersistentLRU(path, capacity=5, serializer="bytes") as lru:
        assert list(lru) == order and lru.stats().torn_tail_bytes == 0
    assert hits > 1000


def test_threads_share_one_cache_safely(tmp_path: Path) -> None:
    with PersistentLRU(tmp_path / "c.lru", capacity=50, serializer="json") as lru:

        def work(t: int) -> None:
            for i in range(300):
                lru[(t, i % 60)] = [t, i]
                lru.get((t, (i * 7) % 60))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(lru) == 50
        order = list(lru)
    with PersistentLRU(tmp_path / "c.lru", capacity=50, serializer="json") as lru:
        assert list(lru) == order
        for k in order:
            assert lru.peek(k)[0] == k[0]


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="capacity"):
        PersistentLRU(tmp_path / "c.lru")
    with pytest.raises(ValueError, match="durability"):
        PersistentLRU(tmp_path / "c.lru", capacity=1, durability="sometimes")  # type: ignore[arg-type]
    with pytest.raises(StoreWriteError):
        PersistentLRU(tmp_path / "missing-dir" / "c.lru", capacity=1)
    lru = PersistentLRU(tmp_path / "c.lru", capacity=2)
    with pytest.raises(TypeError, match="keys must be"):
        lru[1.5] = 1
    with pytest.raises(CacheError):
        lru["f"] = lambda: 1  # not picklable
    lru.close()
    with pytest.raises(CacheError, match="closed"):
        lru["a"]


@given(st.recursive(
    st.one_of(st.integers(), st.text(), st.binary()), lambda inner: st.tuples(inner, inner), max_leaves=6
))
def test_key_encoding_round_trips(key: object) -> None:
    assert decode_key(encode_key(key)) == key


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from("put get del".split()), st.integers(0, 9), st.integers(1, 40))))
def test_recency_order_bounds_match_brute_force(steps: list[tuple[str, int, int]]) -> None:
    order = RecencyOrder(capacity=4, max_bytes=60)
    model: list[tuple[int, int]] = []  # (key, weight), least recent first
    for op, key, weight in steps:
        if op == "put":
            model = [kw for kw in model if kw[0] != key] + [(key, weight)]
            while len(model) > 4 or sum(w for _, w in model) > 60:
                model.pop(0)
            order.insert(key, None, weight)
        elif op == "get" and key in order:
            order.touch(key)
            model = [kw for kw in model if kw[0] != key] + [kw for kw in model if kw[0] == key]
        elif op == "del" and key in order:
            order.remove(key)
            model = [kw for kw in model if kw[0] != key]
        assert list(order) == [k for k, _ in model]
        assert order.total_weight == sum(w for _, w in model)


def test_a_file_reads_the_same_under_another_hash_seed(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; from cache import PersistentLRU\n"
        "with PersistentLRU(sys.argv[1], capacity=50) as lru:\n"
        "    if sys.argv[2] == 'write':\n"
        "        for i in range(40): lru[('t', i, str(i), bytes([i]))] = i\n"
        "    else:\n"
        "        print(sum(lru[('t', i, str(i), bytes([i]))] for i in range(40)), list(lru)[0])\n"
    )
    path = str(tmp_path / "seed.lru")
    for seed, mode in (("1", "write"), ("2", "read")):
        env = {"PYTHONHASHSEED": seed, "PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
        run = subprocess.run([sys.executable, "-c", code, path, mode], capture_output=True, text=True,
                             env=env, check=True)
    assert run.stdout.split(maxsplit=1) == [str(sum(range(40))), "('t', 0, '0', b'\\x00')\n"]


def test_an_intact_record_that_cannot_be_unpickled_raises_a_cache_error(tmp_path: Path) -> None:
    class Garbage:
        name = "pickle"

        def dumps(self, value: object) -> bytes:
            return b"\x80\x05not a pickle at all"

        def loads(self, data: bytes) -> object:
            raise AssertionError("unused")

    path = tmp_path / "g.lru"
    with PersistentLRU(path, capacity=2, serializer=Garbage()) as lru:
        lru["k"] = "v"
    from cache import SerializationError

    with PersistentLRU(path, capacity=2) as lru:
        with pytest.raises(SerializationError, match="cannot deserialize"):
            lru["k"]


def test_bounds_are_kept_in_the_file_and_bad_ones_create_nothing(tmp_path: Path) -> None:
    path = tmp_path / "b.lru"
    with pytest.raises(ValueError):
        PersistentLRU(path, capacity=0)
    with pytest.raises(ValueError):
        PersistentLRU(path)
    assert not path.exists()
    with PersistentLRU(path, capacity=3) as lru:
        for i in range(5):
            lru[i] = i
    with PersistentLRU(path) as lru:  # no bounds given: the file's own (3) apply
        assert lru.stats().capacity == 3
        lru[9] = 9
        assert list(lru) == [3, 4, 9]
    with PersistentLRU(path, capacity=2) as lru:  # shrinking evicts the least recent
        assert list(lru) == [4, 9]
    with PersistentLRU(path, readonly=True) as view:
        assert list(view) == [4, 9] and view.stats().capacity == 2
