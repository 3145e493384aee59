"""PersistentLRU against a reference LRU: hypothesis drives puts, gets, deletes, reopen and resize."""

from __future__ import annotations

import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cache import PersistentLRU

KEYS = st.one_of(
    st.integers(-3, 12),
    st.sampled_from(["a", "b", "é", ""]),
    st.sampled_from([b"a", b"\x00"]),
    st.tuples(st.integers(0, 2), st.sampled_from(["x", "y"])),
)
VALUES = st.one_of(st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=4))


class LRUMachine(RuleBasedStateMachine):
    """Every step is applied to PersistentLRU and to an OrderedDict model; they must agree."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="lru-model-"))
        self.capacity = 5
        self.durability = "process"
        self.lru = self.open()
        self.model: OrderedDict[object, object] = OrderedDict()
        self.evictions = 0

    def open(self) -> PersistentLRU:
        return PersistentLRU(
            self.dir / "m.lru", capacity=self.capacity, durability=self.durability,
            compact_min_bytes=256,
        )

    def evict(self) -> None:
        while len(self.model) > self.capacity:
            self.model.popitem(last=False)
            self.evictions += 1

    @rule(key=KEYS, value=VALUES)
    def put(self, key: object, value: object) -> None:
        self.lru[key] = value
        self.model[key] = value
        self.model.move_to_end(key)
        self.evict()

    @rule(key=KEYS)
    def get(self, key: object) -> None:
        expected = self.model.get(key, "<miss>")
        if key in self.model:
            self.model.move_to_end(key)
        assert self.lru.get(key, "<miss>") == expected

    @rule(key=KEYS)
    def contains_does_not_touch(self, key: object) -> None:
        assert (key in self.lru) == (key in self.model)

    @rule(key=KEYS)
    def delete(self, key: object) -> None:
        if key in self.model:
            del self.model[key]
            del self.lru[key]
        else:
            try:
                del self.lru[key]
            except KeyError:
                pass
            else:
                raise AssertionError("deleting an absent key must raise KeyError")

    @rule(durability=st.sampled_from(["process", "fast", "fsync"]))
    def reopen(self, durability: str) -> None:
        self.lru.close()
        self.durability = durability
        self.lru = self.open()

    @rule(capacity=st.integers(1, 8))
    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        self.lru.resize(capacity)
        self.evict()

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def compact(self) -> None:
        self.lru.compact()

    @rule()
    def clear(self) -> None:
        self.lru.clear()
        self.model.clear()

    @invariant()
    def same_order_and_size(self) -> None:
        assert list(self.lru) == list(self.model)
        stats = self.lru.stats()
        assert stats.entries == len(self.model) <= self.capacity

    def teardown(self) -> None:
        self.lru.close()
        shutil.rmtree(self.dir, ignore_errors=True)


LRUMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_persistent_lru_agrees_with_the_model = LRUMachine.TestCase
