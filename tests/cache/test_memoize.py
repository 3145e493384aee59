"""memoize: one computation per call, whatever its spelling; concurrency; recursion; persistence."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cache import CacheInfo, PersistentLRU
from cache.memoize import memoize


def test_five_equivalent_calls_run_the_body_once(tmp_path: Path) -> None:
    runs = []

    @memoize(tmp_path / "m.lru", capacity=100)
    def f(a, b=2):  # noqa: ANN001, ANN202
        runs.append((a, b))
        return a + b

    assert [f(1, 2), f(1, b=2), f(b=2, a=1), f(a=1, b=2), f(1)] == [3] * 5
    assert runs == [(1, 2)]
    assert f.cache_info() == CacheInfo(hits=4, misses=1, maxsize=100, currsize=1)
    f.close()


def test_unhashable_typed_and_ignored_arguments(tmp_path: Path) -> None:
    runs = []

    @memoize(tmp_path / "m.lru", capacity=100, typed=True, ignore=("verbose",))
    def g(items, opts, verbose=False):  # noqa: ANN001, ANN202
        runs.append(1)
        return len(items) + len(opts)

    g([1, 2], {"x": {1, 2}, "y": 1})
    g([1, 2], {"y": 1, "x": {2, 1}}, verbose=True)
    assert len(runs) == 1
    g([1, 2.0], {"y": 1, "x": {2, 1}})  # typed: 2.0 is not 2
    assert len(runs) == 2
    g.close()


def test_a_stampede_of_eight_threads_computes_once(tmp_path: Path) -> None:
    started = threading.Event()
    release = threading.Event()
    runs = []

    @memoize(tmp_path / "m.lru", capacity=10)
    def slow(x):  # noqa: ANN001, ANN202
        runs.append(x)
        started.set()
        release.wait(10)
        return x * 2

    results = []
    threads = [threading.Thread(target=lambda: results.append(slow(21))) for _ in range(8)]
    threads[0].start()
    started.wait(10)  # one thread is inside the body: the other seven must wait for it
    for t in threads[1:]:
        t.start()
    # Each waiter misses the file twice (before and under the condition) before it waits, and it
    # holds the condition from that second miss to wait(): the owner's 2 + 7 * 2 misses mean all 7 are waiting.
    for _ in range(10_000):
        if slow.cache.stats().misses >= 16:
            break
        release.wait(0.001)  # a bounded poll, not a timing assumption
    assert slow.cache.stats().misses == 16
    release.set()
    for t in threads:
        t.join(10)
    assert results == [42] * 8 and runs == [21]
    slow.close()


def test_recursion_works_and_values_persist(tmp_path: Path) -> None:
    path = tmp_path / "fib.lru"
    calls = []

    def define():  # noqa: ANN202
        @memoize(path, capacity=1000)
        def fib(n):  # noqa: ANN001, ANN202
            calls.append(n)
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        return fib

    fib = define()
    assert fib(60) == 1548008755920
    assert len(calls) == 61
    fib.close()
    fib = define()  # a fresh process would see the same: the values are in the file
    assert fib(60) == 1548008755920 and len(calls) == 61
    fib.close()


def test_same_key_recursion_in_one_thread_does_not_deadlock(tmp_path: Path) -> None:
    state = {"inner": False}

    @memoize(tmp_path / "r.lru", capacity=10)
    def again(n):  # noqa: ANN001, ANN202
        if not state["inner"]:
            state["inner"] = True
            return again(n) + 1  # the very key this thread is computing
        return n

    assert again(1) == 2
    again.close()


def test_exceptions_are_not_cached(tmp_path: Path) -> None:
    attempts = []

    @memoize(tmp_path / "e.lru", capacity=10)
    def flaky(x):  # noqa: ANN001, ANN202
        attempts.append(x)
        if len(attempts) == 1:
            raise RuntimeError("first time fails")
        return x

    with pytest.raises(RuntimeError):
        flaky(1)
    assert flaky(1) == 1 and len(attempts) == 2
    flaky.close()


def test_functions_share_a_file_without_seeing_each_other(tmp_path: Path) -> None:
    path = tmp_path / "shared.lru"

    @memoize(path, capacity=10)
    def double(x):  # noqa: ANN001, ANN202
        return 2 * x

    @memoize(path, capacity=10)
    def triple(x):  # noqa: ANN001, ANN202
        return 3 * x

    assert (double(5), triple(5)) == (10, 15)
    double.cache_clear()
    assert triple.cache_info().currsize == 1
    assert double.cache_key(5) != triple.cache_key(5)
    double.close()


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="capacity"):
        memoize(tmp_path / "x.lru")


def test_cache_attribute_is_the_lru_after_the_first_call(tmp_path: Path) -> None:
    @memoize(tmp_path / "a.lru", capacity=10)
    def square(x):  # noqa: ANN001, ANN202
        return x * x

    assert square.cache is None  # opened lazily
    assert square(3) == 9
    assert isinstance(square.cache, PersistentLRU)
    assert square.cache[square.cache_key(3)] == 9
    square.cache_clear()
    assert square.cache_info() == CacheInfo(hits=0, misses=0, maxsize=10, currsize=0)
    square.close()


def test_methods_are_memoized_when_self_is_ignored(tmp_path: Path) -> None:
    runs = []

    class Scaler:
        @memoize(tmp_path / "m.lru", capacity=10, ignore=("self",))
        def scale(self, x):  # noqa: ANN001, ANN202
            runs.append(x)
            return 2 * x

    assert [Scaler().scale(4), Scaler().scale(x=4)] == [8, 8]
    assert runs == [4]
    with pytest.raises(TypeError, match="self"):
        memoize(tmp_path / "n.lru", capacity=10)(Scaler.scale.__wrapped__)(Scaler(), 1)
    Scaler.scale.close()


def test_a_failed_computation_wakes_a_waiter_which_computes(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()
    attempts = []

    @memoize(tmp_path / "w.lru", capacity=10)
    def flaky(x):  # noqa: ANN001, ANN202
        attempts.append(x)
        if len(attempts) == 1:
            started.set()
            release.wait(10)
            raise RuntimeError("the first computation fails")
        return x

    outcomes = []

    def call() -> None:
        try:
            outcomes.append(flaky(5))
        except RuntimeError as exc:
            outcomes.append(str(exc))

    first, second = threading.Thread(target=call), threading.Thread(target=call)
    first.start()
    started.wait(10)
    second.start()
    for _ in range(10_000):  # owner 2 misses + waiter 2 misses: the waiter is waiting
        if flaky.cache.stats().misses >= 4:
            break
        release.wait(0.001)
    release.set()
    first.join(10)
    second.join(10)
    assert sorted(map(str, outcomes)) == ["5", "the first computation fails"]
    assert attempts == [5, 5]
    flaky.close()
