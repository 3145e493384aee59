"""memoize: a persistent, signature-aware memoizing decorator on PersistentLRU.

    @memoize("fib.lru", capacity=1000)
    def fib(n): ...

- Keys: see cache/keys.py; every spelling of one call is one key.
- The file is opened lazily, on the first call, and shared by every memoized function of this
  process that names the same path (a file has one writer); each function's keys carry its
  qualified name, so functions never see each other's values.
- Concurrent callers of one key compute it once, in any number of processes sharing the file: in a
  process, the other threads wait on a condition; across processes, the computing one holds a kernel
  lock named by the key (PersistentLRU.key_lock: released by the kernel if that process dies), and
  the others block on it, then find the value. A function may
  call itself (fib) on other keys or even on the key it is computing, without deadlocking: a thread
  never waits for a key it is computing itself. An exception is not cached; waiters then retry.
- `wrapper.cache` is the PersistentLRU once the first call (or cache_info/cache_clear) opened it;
  None before. Methods work (self is a bound argument), but only if self's type is keyable: list
  `self` in ignore= when the instance does not change the result.
- Values are pickled by default: a pickle cache file must be trusted like code (files are 0600).
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from cache.keys import KeyMaker
from cache.log import Durability
from cache.persistent import PersistentLRU
from cache.stats import CacheInfo

F = TypeVar("F", bound=Callable[..., Any])
_MISS = object()
_stores: dict[str, tuple[PersistentLRU, tuple[Any, ...]]] = {}
_stores_lock = threading.Lock()


def _shared_store(path: str, settings: tuple[Any, ...]) -> PersistentLRU:
    real = os.path.realpath(path)
    with _stores_lock:
        found = _stores.get(real)
        if found is not None and not found[0].closed:
            if found[1] != settings:
                raise ValueError(f"{path} is already open for memoize with other settings: {found[1]}")
            return found[0]
        capacity, max_bytes, durability, serializer = settings
        store = PersistentLRU(path, capacity, max_bytes=max_bytes, durability=durability, serializer=serializer)
        _stores[real] = (store, settings)
        return store


@atexit.register
def _close_all() -> None:
    with _stores_lock:
        for store, _settings in _stores.values():
            store.close()
        _stores.clear()


def memoize(
    path: str | os.PathLike[str],
    capacity: int | None = None,
    *,
    max_bytes: int | None = None,
    typed: bool = False,
    ignore: Iterable[str] = (),
    durability: Durability = "process",
    serializer: str = "pickle",
) -> Callable[[F], F]:
    """Memoize a function in the persistent LRU at *path*; see the module docstring for the rules."""
    if capacity is None and max_bytes is None:
        raise ValueError("give capacity (entries) and/or max_bytes")
    settings = (capacity, max_bytes, durability, serializer)
    ignored = tuple(ignore)

    def decorate(fn: F) -> F:
        make_key = KeyMaker(fn, typed=typed, ignore=ignored)
        cond = threading.Condition()
        pending: set[tuple[str, bytes]] = set()  # keys some thread is computing now
        local = threading.local()  # .computing: the keys this thread is computing (recursion)
        counts = {"hits": 0, "misses": 0}

        def store() -> PersistentLRU:
            lru = _shared_store(os.fspath(path), settings)
            wrapper.cache = lru  # type: ignore[attr-defined]  # the file opened last (lazily)
            return lru

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = make_key(args, kwargs)
            lru = store()
            value = lru.get(key, _MISS)
            if value is not _MISS:
                with cond:  # += on a dict item is not atomic across threads
                    counts["hits"] += 1
                return value
            computing = getattr(local, "computing", None)
            if computing is None:
                computing = local.computing = set()
            owner = False
            with cond:
                while True:
                    value = lru.get(key, _MISS)
                    if value is not _MISS:
                        counts["hits"] += 1
                        return value
                    if key in computing:  # this thread is already computing it: compute directly
                        break
                    if key not in pending:
                        pending.add(key)
                        owner = True
                        break
                    cond.wait()
                counts["misses"] += 1
            computing.add(key)
            try:
                if owner:
                    with lru.key_lock(key):  # other processes: one computes, the rest wait here
                        if lru.peek(key, _MISS) is not _MISS:  # another process computed it meanwhile
                            value = lru.get(key, _MISS)
                            if value is not _MISS:
                                with cond:
                                    counts["misses"] -= 1
                                    counts["hits"] += 1
                                return value
                        value = fn(*args, **kwargs)
                        lru[key] = value
                        return value
                value = fn(*args, **kwargs)
                lru[key] = value
                return value
            finally:
                computing.discard(key)
                if owner:
                    with cond:
                        pending.discard(key)
                        cond.notify_all()

        def cache_info() -> CacheInfo:
            """Hits and misses of this function; maxsize and currsize of the (shared) file."""
            lru = store()
            return CacheInfo(counts["hits"], counts["misses"], capacity, len(lru))

        def cache_clear() -> None:
            """Remove this function's entries (other functions sharing the file keep theirs)."""
            lru = store()
            for key in list(lru):
                if isinstance(key, tuple) and key and key[0] == make_key.name:
                    del lru[key]
            counts["hits"] = counts["misses"] = 0

        def cache_key(*args: Any, **kwargs: Any) -> tuple[str, bytes]:
            """Return the key a call with these arguments is stored under."""
            return make_key(args, kwargs)

        def close() -> None:
            """Close the file (for every function sharing it); the next call reopens it."""
            real = os.path.realpath(os.fspath(path))
            with _stores_lock:
                found = _stores.pop(real, None)
            if found is not None:
                found[0].close()

        wrapper.cache = None  # type: ignore[attr-defined]  # the PersistentLRU, after the first call
        wrapper.cache_info = cache_info  # type: ignore[attr-defined]
        wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
        wrapper.cache_key = cache_key  # type: ignore[attr-defined]
        wrapper.close = close  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
