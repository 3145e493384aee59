"""The contenders, each behind the same get/set/close face."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CAPACITY = 20_000


@dataclass
class Adapter:
    """A cache under test: get(key) -> value or None, set(key, value), close(), file bytes."""

    get: Callable[[int], Any]
    set: Callable[[int, bytes], None]
    close: Callable[[], None]
    size: Callable[[], int]


def _tree_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def persistent(durability: str, exclusive: bool = False) -> Callable[[str, float], Adapter]:
    def make(workdir: str, mean_value: float) -> Adapter:
        from cache import PersistentLRU

        path = os.path.join(workdir, f"persistent-{durability}{'-x' if exclusive else ''}.lru")
        lru = PersistentLRU(path, capacity=CAPACITY, serializer="bytes", durability=durability,
                            exclusive=exclusive)
        return Adapter(lru.get, lru.__setitem__, lru.close, lambda: _tree_size(path))

    return make


def persistent_joined(workdir: str, mean_value: float) -> Adapter:
    """The default open with a second open of the file present (idle): every operation locks.

    Alone, the default open is the file's sole open (cache/shared.py) and runs as a single owner
    does; this row measures the protocol a process pays once another one has the file open.
    """
    from cache import PersistentLRU

    path = os.path.join(workdir, "persistent-joined.lru")
    lru = PersistentLRU(path, capacity=CAPACITY, serializer="bytes")
    other = PersistentLRU(path, capacity=CAPACITY, serializer="bytes")  # the sole open lets go

    def close() -> None:
        other.close()
        lru.close()

    return Adapter(lru.get, lru.__setitem__, close, lambda: _tree_size(path))


def diskcache_lru(workdir: str, mean_value: float) -> Adapter:
    import diskcache

    path = os.path.join(workdir, "diskcache")
    # diskcache bounds only bytes (size_limit), culled on set: give it the byte size of 20,000 mean
    # values, so it holds about as many entries as the others' exact 20,000-entry bound.
    c = diskcache.Cache(path, eviction_policy="least-recently-used", size_limit=int(CAPACITY * mean_value))
    return Adapter(c.get, c.set, c.close, lambda: _tree_size(path))


def cachetools_lru(workdir: str, mean_value: float) -> Adapter:
    import cachetools

    c = cachetools.LRUCache(maxsize=CAPACITY)
    return Adapter(c.get, c.__setitem__, lambda: None, lambda: 0)


def ordereddict_lru(workdir: str, mean_value: float) -> Adapter:
    """The ceiling: the least a Python LRU can do per operation, in memory, no persistence."""
    d: OrderedDict[int, bytes] = OrderedDict()

    def get(key: int) -> bytes | None:
        try:
            d.move_to_end(key)
        except KeyError:
            return None
        return d[key]

    def set_(key: int, value: bytes) -> None:
        d[key] = value
        d.move_to_end(key)
        if len(d) > CAPACITY:
            d.popitem(last=False)

    return Adapter(get, set_, lambda: None, lambda: 0)


CONTENDERS: dict[str, Callable[[str, float], Adapter]] = {
    "diskcache LRU": diskcache_lru,
    "PersistentLRU process": persistent("process"),
    "PersistentLRU process exclusive": persistent("process", exclusive=True),
    "PersistentLRU process, 2nd open present": persistent_joined,
    "PersistentLRU fast": persistent("fast"),
    "cachetools LRUCache (memory)": cachetools_lru,
    "OrderedDict LRU (memory ceiling)": ordereddict_lru,
}
FSYNC = ("PersistentLRU fsync", persistent("fsync"))
