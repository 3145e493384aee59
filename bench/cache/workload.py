"""The seeded trace of issue 3: Zipf keys on a shuffled rank, 90% get / 10% set, cache-aside."""

from __future__ import annotations

import bisect
import itertools
import random
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Trace:
    """Operations as (key, is_get) pairs, and the value pool the sets draw from."""

    ops: list[tuple[int, bool]]
    values: list[bytes]

    def value_for(self, key: int) -> bytes:
        return self.values[key % len(self.values)]


def make_trace(seed: int = 20261122, n_ops: int = 200_000, n_keys: int = 100_000, s: float = 0.99) -> Trace:
    """Return the seeded trace: key ranks Zipf(s) over *n_keys*, mapped through a shuffled permutation."""
    rnd = random.Random(seed)
    cumulative = list(itertools.accumulate(1 / (rank + 1) ** s for rank in range(n_keys)))
    total = cumulative[-1]
    perm = list(range(n_keys))
    rnd.shuffle(perm)
    ops = [
        (perm[bisect.bisect(cumulative, rnd.random() * total)], rnd.random() < 0.9)
        for _ in range(n_ops)
    ]
    values = [rnd.randbytes(rnd.randint(256, 4096)) for _ in range(1024)]
    return Trace(ops, values)


def exact_lru_hits(trace: Trace, capacity: int) -> int:
    """Return the hits an exact LRU of *capacity* entries scores on the trace (the ceiling)."""
    lru: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for key, is_get in trace.ops:
        if is_get and key in lru:
            hits += 1
            lru.move_to_end(key)
            continue
        lru[key] = None  # a set, or the fill after a miss
        lru.move_to_end(key)
        if len(lru) > capacity:
            lru.popitem(last=False)
    return hits
