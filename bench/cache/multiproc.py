"""Several processes on one cache file: the bench workload split among them (issue 17).

Each process (forked, then opening the cache itself) plays its share of the trace, ops[i::n],
cache-aside, timing every get and every set. All start at one barrier; aggregate ops/s is every
operation of every process over the span from the first start to the last finish. Each process's CPU
time (user + system, all its threads) over its share gives the CPU per operation.

Checks, both contenders alike:
    garbage  a value read (during the run, or in a full scan afterwards) that is not the one its key
             always gets (values are a pure function of the key), or a damaged record
    lost     a set that failed (an exception, or diskcache returning False), or one of a process's
             last LAST_SETS acknowledged sets missing when that process has played its share (read
             back then, untimed: far too recent to be evicted). Not after the whole run: a process
             that finishes early leaves its last sets to the others' later puts, which may evict
             them as an LRU must (session 16: an early finisher's last sets were followed by 20,488
             distinct keys put or touched, over the capacity of 20,000, and were counted "lost")
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LAST_SETS = 20


@dataclass
class SplitRuns:
    """What a split-trace measurement runs: process counts, rounds, the trace's first operations."""

    counts: list[int]
    rounds: int
    ops: list
    values: list
    mean_value: float


def split_runs_options(description: str) -> SplitRuns:
    """Parse --processes, --ops and --rounds; take that many operations of the bench trace."""
    from bench.cache.workload import make_trace

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--processes", default="2,4,8")
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trace = make_trace()
    return SplitRuns([int(x) for x in args.processes.split(",")], args.rounds,
                     trace.ops[: args.ops], trace.values,
                     statistics.fmean(len(v) for v in trace.values))


@dataclass
class Share:
    """One process's outcome."""

    start: float
    end: float
    get_ns: array
    set_ns: array
    garbage: int
    failed_sets: int
    last_sets: list[int]
    missing_at_end: int  # of last_sets, read back when this process had played its share
    cpu: float  # seconds of CPU (user + system) this process spent playing its share


def open_persistent(path: str, capacity: int, mean_value: float) -> tuple[Callable, Callable, Callable]:
    from cache import PersistentLRU

    lru = PersistentLRU(os.path.join(path, "shared.lru"), capacity=capacity, serializer="bytes")
    return lru.get, lru.__setitem__, lru.close


def open_diskcache(path: str, capacity: int, mean_value: float) -> tuple[Callable, Callable, Callable]:
    import diskcache

    c = diskcache.Cache(os.path.join(path, "diskcache"), eviction_policy="least-recently-used",
                        size_limit=int(capacity * mean_value))
    return c.get, c.set, c.close


OPENERS = {"PersistentLRU": open_persistent, "diskcache LRU": open_diskcache}


def _play(opener: str, path: str, capacity: int, mean_value: float, ops: list, values: list,
          barrier: Any, results: Any, index: int) -> None:
    get, set_, close = OPENERS[opener](path, capacity, mean_value)
    nvalues = len(values)
    get_ns, set_ns = array("q"), array("q")
    gadd, sadd = get_ns.append, set_ns.append
    clock = time.perf_counter_ns
    garbage = failed = 0
    recent: list[int] = []
    barrier.wait()
    start = time.perf_counter()
    cpu = time.process_time()
    for key, is_get in ops:
        value = values[key % nvalues]
        if is_get:
            t0 = clock()
            got = get(key)
            gadd(clock() - t0)
            if got is not None:
                if got != value:
                    garbage += 1
                continue
        t0 = clock()
        try:
            ok = set_(key, value)
        except Exception:
            ok = False
        sadd(clock() - t0)
        if ok is False:
            failed += 1
        else:
            recent.append(key)
            if len(recent) > 4 * LAST_SETS:
                del recent[: 2 * LAST_SETS]
    end = time.perf_counter()
    cpu = time.process_time() - cpu
    last = list(dict.fromkeys(reversed(recent)))[:LAST_SETS]
    missing = sum(get(key) is None for key in last)
    close()
    results.put((index, Share(start, end, get_ns, set_ns, garbage, failed, last, missing, cpu)))


def run(opener: str, path: str, n: int, ops: list, values: list, capacity: int, mean_value: float) -> dict:
    """Play *ops* split over *n* forked processes on one cache in *path*; return the figures."""
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_play, args=(opener, path, capacity, mean_value, ops[i::n], values,
                                             barrier, results, i)) for i in range(n)]
    for p in procs:
        p.start()
    shares = [results.get()[1] for _ in procs]
    for p in procs:
        p.join()
        assert p.exitcode == 0, f"{opener} worker exited {p.exitcode}"
    get_ns = sorted(x for s in shares for x in s.get_ns)
    set_ns = sorted(x for s in shares for x in s.set_ns)
    span = max(s.end for s in shares) - min(s.start for s in shares)
    garbage = sum(s.garbage for s in shares)
    lost = sum(s.failed_sets + s.missing_at_end for s in shares)
    # After the run: every stored value is checked.
    if opener == "PersistentLRU":
        from cache import PersistentLRU

        with PersistentLRU(os.path.join(path, "shared.lru"), readonly=True, serializer="bytes") as view:
            for key in view:
                garbage += view.peek(key) != values[key % len(values)]
    else:
        import diskcache

        with diskcache.Cache(os.path.join(path, "diskcache")) as view:
            for key in list(view.iterkeys()):
                got = view.get(key)
                garbage += got is not None and got != values[key % len(values)]
    return {
        "ops_per_s": len(ops) / span,
        "get_p99_ms": _pct(get_ns, 0.99) / 1e6, "get_max_ms": get_ns[-1] / 1e6,
        "set_p99_ms": _pct(set_ns, 0.99) / 1e6, "set_max_ms": set_ns[-1] / 1e6,
        "garbage": garbage, "lost": lost,
        "cpu_us_per_op": sum(s.cpu for s in shares) / len(ops) * 1e6,
    }


def _pct(sorted_ns: list[int], q: float) -> float:
    return float(sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))]) if sorted_ns else 0.0


def paired_summary(n: int, first: str, second: str, figs_first: list[dict], figs_second: list[dict]) -> str:
    """One line comparing two variants' alternated runs at *n* processes: medians, paired ratios, CPU per op."""
    a = [f["ops_per_s"] for f in figs_first]
    b = [f["ops_per_s"] for f in figs_second]
    pairs = sorted(y / x for x, y in zip(a, b, strict=True))
    cpu_a = statistics.median(f["cpu_us_per_op"] for f in figs_first)
    cpu_b = statistics.median(f["cpu_us_per_op"] for f in figs_second)
    bad = sum(f["lost"] + f["garbage"] for f in figs_first + figs_second)
    return (f"{n} processes: {first} {statistics.median(a):,.0f} {second} {statistics.median(b):,.0f} ops/s, "
            f"{second}/{first} x{statistics.median(pairs):.3f} (pairs {', '.join(f'{p:.3f}' for p in pairs)}); "
            f"CPU per op {cpu_a:.1f} -> {cpu_b:.1f} us; lost + garbage {bad}")
