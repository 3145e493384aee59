"""Where the single-process trace stalls: compaction and file growth, timed inside a play (issue 17).

`python -m bench.cache.stalls [--ops N] [--rounds R] [--exclusive]` plays the first N operations of
the bench trace on one PersistentLRU in this process (bench/cache/crc_speed.py `play`) and times,
by wrapping them, every compaction (`_compact_held`, and of it the copy, `copy_compacted`) and
every growth of the file in the operating thread (`GrowingMap._extend` and the shared log's
`_map`; a helper thread's steps are not counted). Prints the medians over R rounds. Session 17:
the sole open spent 118 of 1,280 ms growing and mapping inline before it grew with a helper
(then 0.7 of 1,180 ms in `_map`). The compaction's copy loop compiled (cache/_ccompact.c), 9
alternated rounds of one play each, medians: the copy (its writes and fsync included) 116 -> 100 ms,
the whole compaction 182 -> 160 ms; the loop's own time (cProfile) went 111 -> 34 ms, the rest is
the new file's page-cache writes on the writer thread. Measure only: a timer around a call.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.cache import crc_speed


def _timed(owner: Any, name: str, totals: dict[str, float], label: str) -> Callable[[], None]:
    """Wrap owner.name to add its wall time (in the operating thread only) to totals[label]."""
    original = getattr(owner, name)
    main = threading.main_thread()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            if threading.current_thread() is main:
                totals[label] += time.perf_counter() - start

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, original)


def measure(n_ops: int, exclusive: bool) -> dict[str, float]:
    """Return the seconds of one play: in total, compacting, copying, growing, mapping."""
    from cache import growth, persistent, rewrite

    totals = dict.fromkeys(("play", "compaction", "copy", "grow", "map"), 0.0)
    undo = [
        _timed(persistent.PersistentLRU, "_compact_held", totals, "compaction"),
        _timed(rewrite, "copy_compacted", totals, "copy"),
        _timed(growth.GrowingMap, "_extend", totals, "grow"),
        _timed(growth.SharedGrowingMap, "_map", totals, "map"),
    ]
    try:
        start = time.perf_counter()
        crc_speed.play(n_ops, exclusive)
        totals["play"] = time.perf_counter() - start
    finally:
        for restore in undo:
            restore()
    return totals


def main() -> None:
    """Time the stalls of the trace's play, median of rounds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exclusive", action="store_true")
    args = parser.parse_args()
    runs = [measure(args.ops, args.exclusive) for _ in range(args.rounds)]
    for label in runs[0]:
        print(f"{label}: {statistics.median(r[label] for r in runs) * 1000:.1f} ms (median of {args.rounds})")


if __name__ == "__main__":
    main()
