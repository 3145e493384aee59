"""The index's payloads: replaced in place by a compaction, and out of the garbage collector's walk."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from cache import PersistentLRU
from cache.order import RecencyOrder


def test_replace_payload_list_keeps_places_and_weights() -> None:
    order = RecencyOrder(10)
    for key, weight in (("a", 1), ("b", 2), ("c", 3)):
        order.insert(key, f"old {key}", weight)
    order.touch("a")
    order.replace_payload_list(["new b", "new c", "new a"])
    assert list(order.items()) == [("b", "new b", 2), ("c", "new c", 3), ("a", "new a", 1)]
    assert order.total_weight == 6


def test_replace_payload_list_refuses_another_count() -> None:
    order = RecencyOrder(10)
    order.insert("a", 1, 1)
    with pytest.raises(ValueError):
        order.replace_payload_list([1, 2])
    assert list(order.items()) == [("a", 1, 1)]


@pytest.mark.parametrize("exclusive", [True, False])
def test_index_entries_leave_the_garbage_collectors_tracking(tmp_path: Path, exclusive: bool) -> None:
    with PersistentLRU(tmp_path / "c.lru", capacity=50, serializer="bytes", exclusive=exclusive) as lru:
        for i in range(80):
            lru[i] = b"v%d" % i
        lru.compact()  # the payloads a compaction gives are untracked too
        lru[200] = b"after"
        gc.collect()  # untracks the payloads (tuples of ints and bytes) ...
        gc.collect()  # ... and then the (payload, weight) tuples holding them
        entries = [entry for _key, entry in lru._order._items.items()]
        assert len(entries) == 50
        assert not any(gc.is_tracked(entry) for entry in entries)
        assert [lru[i] for i in range(31, 80)] == [b"v%d" % i for i in range(31, 80)]
        assert lru[200] == b"after"


def test_a_follower_reads_what_another_open_compacted(tmp_path: Path) -> None:
    path = tmp_path / "c.lru"
    with PersistentLRU(path, capacity=20, serializer="bytes") as a, PersistentLRU(path, serializer="bytes") as b:
        for i in range(30):
            a[i] = b"v%d" % i
        assert b[29] == b"v29"
        a.compact()
        assert [b.get(i) for i in range(10, 30)] == [b"v%d" % i for i in range(10, 30)]
        assert list(a) == list(b)
