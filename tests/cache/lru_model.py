"""A reference LRU and a seeded workload, shared by the property, corruption and crash tests."""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass


class ModelLRU:
    """The obvious in-memory LRU (entries bound only) that PersistentLRU must agree with."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: OrderedDict[object, object] = OrderedDict()

    def get(self, key: object) -> object | None:
        if key not in self.items:
            return None
        self.items.move_to_end(key)
        return self.items[key]

    def put(self, key: object, value: object) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)

    def delete(self, key: object) -> None:
        self.items.pop(key, None)

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        while len(self.items) > capacity:
            self.items.popitem(last=False)

    def snapshot(self) -> list[tuple[object, object]]:
        return list(self.items.items())


@dataclass(frozen=True)
class Op:
    kind: str  # "put", "get", "del", "compact"
    key: object = None
    value: bytes = b""


MIXES = {"mixed": (0.45, 0.9, 0.985), "reads": (0.04, 0.99, 0.995)}


def workload(seed: int, n: int, keys: int = 120, mix: str = "mixed") -> list[Op]:
    """Return *n* seeded operations: puts of varied sizes, gets, deletes, now and then a compaction.

    mix "mixed" is write-heavy; "reads" is mostly gets over few keys, so most gets are hits.
    """
    rnd = random.Random(seed)
    p_put, p_get, p_del = MIXES[mix]
    if mix == "reads":
        keys = 15
    ops = []
    for i in range(n):
        r = rnd.random()
        key: object = rnd.randrange(keys)
        if rnd.random() < 0.3:
            key = ("k", key) if rnd.random() < 0.5 else f"s{key}"
        if r < p_put:
            ops.append(Op("put", key, f"v{i}:".encode() + rnd.randbytes(rnd.randrange(0, 700))))
        elif r < p_get:
            ops.append(Op("get", key))
        elif r < p_del:
            ops.append(Op("del", key))
        else:
            ops.append(Op("compact"))
    return ops


def model_states(
    ops: list[Op], capacity: int, wanted: set[int] | None = None
) -> dict[int, list[tuple[object, object]]]:
    """Return the model's (key, value) list, least recent first, after the first i ops, for i in *wanted*.

    State 0 is the empty cache; state len(ops) is the final one. *wanted* None means every state.
    """
    model = ModelLRU(capacity)
    states = {}
    if wanted is None or 0 in wanted:
        states[0] = model.snapshot()
    for i, op in enumerate(ops, start=1):
        if op.kind == "put":
            model.put(op.key, op.value)
        elif op.kind == "get":
            model.get(op.key)
        elif op.kind == "del":
            model.delete(op.key)
        if wanted is None or i in wanted:
            states[i] = model.snapshot()
    return states


def apply(lru, op: Op) -> None:  # noqa: ANN001 - a PersistentLRU, kept untyped to stay import-free
    """Apply *op* to a PersistentLRU the way the model applies it."""
    if op.kind == "put":
        lru[op.key] = op.value
    elif op.kind == "get":
        lru.get(op.key)
    elif op.kind == "del":
        try:
            del lru[op.key]
        except KeyError:
            pass
    else:
        lru.compact()


def read_state(lru) -> list[tuple[object, object]]:  # noqa: ANN001
    """Return (key, value) least recent first, reading with peek so the order is not disturbed."""
    return [(k, lru.peek(k)) for k in list(lru)]
