"""What following the other processes costs: the work behind the multi-process rows (issue 17).

Every open of a shared file applies every record the others append (cache/follow.py), so each
operation's record is applied once more by each of the n - 1 other processes. Measured here alone:
one open plays a stretch of the trace while a second open of the same file stays idle, then the
second catches up on all of it at once (`len()` takes the lock and replays what it has not seen);
its CPU time over the records replayed is the cost of applying one record.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

SPAN = 30_000  # operations played (and followed) first, so evictions happen; as many then followed


def _play(lru: Any, ops: list[tuple[int, bool]], values: list[bytes]) -> None:
    get, put = lru.get, lru.__setitem__
    for key, is_get in ops:
        if not is_get or get(key) is None:
            put(key, values[key % len(values)])


def replay_cost(workdir: str, ops: list[tuple[int, bool]], values: list[bytes], capacity: int,
                rounds: int = 3) -> dict[str, float]:
    """Return µs of CPU to apply one followed record and records per operation (medians of *rounds*)."""
    from cache import PersistentLRU

    per_record, per_op = [], []
    span = min(SPAN, len(ops) // 2)
    for r in range(rounds):
        path = os.path.join(workdir, f"replay{r}.lru")
        follower = PersistentLRU(path, capacity=capacity, serializer="bytes")
        writer = PersistentLRU(path, capacity=capacity, serializer="bytes")
        try:
            _play(writer, ops[:span], values)
            len(follower)  # caught up
            seen = follower._log.next_seq
            _play(writer, ops[span:2 * span], values)
            cpu = time.process_time()
            len(follower)
            cpu = time.process_time() - cpu
            records = follower._log.next_seq - seen
        finally:
            writer.close()
            follower.close()
        per_record.append(cpu / records * 1e6)
        per_op.append(records / span)
    return {"us_per_record": statistics.median(per_record), "records_per_op": statistics.median(per_op)}
