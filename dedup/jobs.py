"""Running jobs: in order with a bound on what is in flight, or inline (no thread at all)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (dedup/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from concurrent.futures import Executor, Future
    from typing import TypeVar

    T = TypeVar("T")
    R = TypeVar("R")

# Files per job: large enough that a thread hand-off (~20 µs) is small next to the reads.
BATCH_FILES = 64
# I/O jobs in flight per I/O thread (directory listings, small files not in the page cache): each
# holds at most one open descriptor, so open descriptors stay under io_threads * IO_DEPTH + a few.
IO_DEPTH = 4


def batches(items: list[T], size: int) -> Iterator[list[T]]:
    """Yield *items* in lists of *size* (the last one shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def bounded_map(pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """Yield fn(item) for each item in order, with at most *window* jobs submitted at once.

    Bounds memory (results and buffers in flight) where `Executor.map` would submit everything.
    """
    pending: list[Future[R]] = []
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.pop(0).result()
        while pending:
            yield pending.pop(0).result()
    finally:
        for future in pending:
            future.cancel()


class _Done:
    """A finished job: the part of `Future` that `bounded_map` uses."""

    __slots__ = ("_value", "_error")

    def __init__(self, value: object, error: BaseException | None) -> None:
        self._value, self._error = value, error

    def result(self) -> object:
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self) -> bool:
        return False


class Inline:
    """Runs each job at submit time: no thread hand-off (and no thread module) for --threads 1."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return _Done(fn(*args, **kwargs), None)
        except Exception as exc:
            return _Done(None, exc)

    def __enter__(self) -> Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class LazyPool:
    """A thread pool started at its first job: a warm run, whose reads the page cache serves in
    the calling thread, never imports concurrent.futures nor starts a thread (1.2 MB of RSS in
    every process)."""

    def __init__(self, threads: int, name: str) -> None:
        self._threads, self._name = threads, name
        self._pool: Executor | None = None

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=self._name)
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def no_progress(phase: str, done: int, total: int) -> None:
    """A progress callback that shows nothing."""
