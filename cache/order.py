"""RecencyOrder: the exact LRU order with entry and byte bounds. Pure: no I/O, no clock.

It maps each key to a payload (PersistentLRU stores where the record lies) and a weight (its bytes).
Eviction is decided before it is done: `evictions_for` names the keys an insert would evict, so the
owner can write them to its log in the same write as the insert, and only then apply it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator
from typing import Any


class RecencyOrder:
    """Keys from least to most recently used, each with a payload and a weight, within bounds."""

    __slots__ = ("_items", "capacity", "entries", "lookup", "max_bytes", "move_to_end", "size", "total_weight")

    # Invariants: _items iterates least -> most recently used; total_weight == sum of weights;
    # after insert() returns, len <= capacity and total_weight <= max_bytes (when those are set).

    def __init__(self, capacity: int | None = None, max_bytes: int | None = None) -> None:
        """Create an empty order; None means unbounded on that axis."""
        _check_bounds(capacity, max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        # lookup(key) -> (payload, weight) or None, without counting a use: the hot path's read.
        self.lookup = self._items.get
        # move_to_end(key): `touch` without a method call, for the hot path; KeyError if absent.
        self.move_to_end = self._items.move_to_end
        self.size = self._items.__len__  # len() without a Python-level call, for the hot path
        # key -> (payload, weight): for the compiled follow loop (cache/_cfollow.c), which changes
        # it only as load_evicting does and keeps total_weight itself; nothing else may.
        self.entries = self._items
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.total_weight = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[Hashable]:
        """Iterate keys from least to most recently used (the eviction order)."""
        return iter(self._items)

    def items(self) -> Iterator[tuple[Hashable, Any, int]]:
        """Iterate (key, payload, weight) from least to most recently used."""
        for key, (payload, weight) in self._items.items():
            yield key, payload, weight

    def peek(self, key: Hashable) -> Any:
        """Return the payload of *key* without counting a use; raise KeyError if absent."""
        return self._items[key][0]

    def is_newest(self, key: Hashable) -> bool:
        """Return True if *key* is the most recently used key."""
        return bool(self._items) and next(reversed(self._items)) == key

    def load(self, key: Hashable, payload: Any, weight: int) -> Any:
        """Append *key* as most recently used without checking bounds (replay; then `over_bounds`).

        Return the payload *key* had before, or None.
        """
        items = self._items
        old = items.pop(key, None)
        items[key] = (payload, weight)
        if old is None:
            self.total_weight += weight
            return None
        self.total_weight += weight - old[1]
        return old[0]

    def load_evicting(self, key: Hashable, payload: Any, weight: int) -> tuple[Any, list[Any]]:
        """`load`, then remove the least recent keys beyond the bounds (never *key*, the newest).

        Return (the payload *key* had before or None, the removed keys' payloads, least recent
        first): a followed put in one call (cache/follow.py), not load, len, bounds and remove.
        """
        items = self._items
        old = items.pop(key, None)
        items[key] = (payload, weight)
        if old is None:
            self.total_weight += weight
        else:
            self.total_weight += weight - old[1]
            old = old[0]
        if self.max_bytes is None:
            capacity = self.capacity
            if capacity is None or len(items) <= capacity:
                return old, []
            if len(items) == capacity + 1:  # the common case: one new key in a full order
                _k, (gone, w) = items.popitem(last=False)
                self.total_weight -= w
                return old, [gone]
        elif self.total_weight <= self.max_bytes and (self.capacity is None or len(items) <= self.capacity):
            return old, []
        return old, [self.remove(k) for k in self.over_bounds()]

    def touch(self, key: Hashable) -> None:
        """Mark *key* most recently used; raise KeyError if absent."""
        self._items.move_to_end(key)

    def evictions_for(self, key: Hashable, weight: int) -> list[Hashable]:
        """Return the keys, least recent first, that inserting *key* with *weight* would evict."""
        items = self._items
        if self.max_bytes is None:
            # Entries only (the common case): a new key at capacity evicts the least recent one.
            capacity = self.capacity
            if capacity is None or len(items) < capacity or key in items:
                return []
            if len(items) == capacity:
                return [next(iter(items))]  # not *key*: it is absent
        elif weight > self.max_bytes:
            raise ValueError(f"an entry of {weight} bytes exceeds max_bytes={self.max_bytes}")
        old = items.get(key)
        count = len(items) + (0 if old else 1)
        total = self.total_weight + weight - (old[1] if old else 0)
        victims: list[Hashable] = []
        if (self.capacity is None or count <= self.capacity) and (
            self.max_bytes is None or total <= self.max_bytes
        ):
            return victims
        for k, (_p, w) in items.items():
            if (self.capacity is None or count <= self.capacity) and (
                self.max_bytes is None or total <= self.max_bytes
            ):
                break
            if k == key:
                continue  # the entry being replaced is not a victim: it stays, with its new weight
            victims.append(k)
            count -= 1
            total -= w
        return victims

    def insert(self, key: Hashable, payload: Any, weight: int) -> list[tuple[Hashable, Any]]:
        """Insert or replace *key* as most recently used; evict and return (key, payload) pairs."""
        victims = self.evictions_for(key, weight)
        evicted = [(k, self.remove(k)) for k in victims]
        old = self._items.pop(key, None)
        if old is not None:
            self.total_weight -= old[1]
        self._items[key] = (payload, weight)
        self.total_weight += weight
        return evicted

    def payloads(self) -> list[tuple[Hashable, Any]]:
        """Return (key, payload) pairs from least to most recently used."""
        return [(key, entry[0]) for key, entry in self._items.items()]

    def replace_payloads(self, pairs: Iterable[tuple[Hashable, Any]]) -> None:
        """Change the payload of each present key, without changing its place or weight."""
        items = self._items
        for key, payload in pairs:
            items[key] = (payload, items[key][1])

    def payload_list(self) -> list[Any]:
        """Return the payloads from least to most recently used."""
        return [entry[0] for entry in self._items.values()]

    def replace_payload_list(self, payloads: list[Any]) -> None:
        """Give the keys, least to most recently used, these payloads (one each), keeping places and weights."""
        items = self._items
        if len(payloads) != len(items):
            raise ValueError(f"{len(payloads)} payloads for {len(items)} keys")
        # An existing key's assignment keeps its place in an OrderedDict: no order is rebuilt.
        for (key, (_old, weight)), payload in zip(list(items.items()), payloads, strict=True):
            items[key] = (payload, weight)

    def replace_payload(self, key: Hashable, payload: Any) -> None:
        """Change the payload of *key* without changing its place or weight."""
        _old, weight = self._items[key]
        self._items[key] = (payload, weight)

    def remove(self, key: Hashable) -> Any:
        """Remove *key* and return its payload; raise KeyError if absent."""
        payload, weight = self._items.pop(key)
        self.total_weight -= weight
        return payload

    def clear(self) -> None:
        """Remove every key."""
        self._items.clear()
        self.total_weight = 0

    def over_bounds(self) -> list[Hashable]:
        """Return the least recent keys that must go for the order to fit its bounds again."""
        count, total, victims = len(self._items), self.total_weight, []
        for k, (_p, w) in self._items.items():
            if (self.capacity is None or count <= self.capacity) and (
                self.max_bytes is None or total <= self.max_bytes
            ):
                break
            victims.append(k)
            count -= 1
            total -= w
        return victims

    def set_bounds(self, capacity: int | None, max_bytes: int | None) -> None:
        """Change the bounds; the caller then removes `over_bounds()` keys."""
        _check_bounds(capacity, max_bytes)
        self.capacity, self.max_bytes = capacity, max_bytes


def _check_bounds(capacity: int | None, max_bytes: int | None) -> None:
    if capacity is not None and (not isinstance(capacity, int) or capacity < 1):
        raise ValueError(f"capacity must be a positive integer or None, not {capacity!r}")
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 1):
        raise ValueError(f"max_bytes must be a positive integer or None, not {max_bytes!r}")
