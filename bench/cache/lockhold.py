"""Where a shared file's CPU goes, per operation, at 2, 4 and 8 processes (issue 17; measure only).

`python -m bench.cache.lockhold [--processes 2,4,8] [--ops N] [--rounds R]` plays the bench trace
split over n forked processes on one file, as bench/cache/multiproc.py does, with the protocol of
cache/sharedlog.py timed from inside each process (CPU by `time.process_time`, so a process that
is waiting for a core is not counted; each timed span's own timer call, ~0.3 us, is taken back out):

    follow    CPU applying the records other processes appended (cache/catchup.py `_follow`, ahead
              of the lock, while waiting for it, or under it), and the records applied
    wait      CPU in the wait loop for the writer lock (`_lock_following`) other than following
    held      from begin() holding the lock to finish() starting: CPU, and wall time as a share of
              the run's span (the lock's occupancy)
    rest      everything else of the process's CPU over its share of the trace

It also prints the operations that found the lock taken, compactions, generations loaded whole,
and minor page faults and involuntary context switches per operation. A first run on the 2-core
shared machine (100k operations, see the README's cache speed row) found the lock held a third
of each run's span at every process count, waits on a minority of operations, and following as the
largest share of the CPU at 8 processes: a work that grows with the number of processes.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import time
from typing import Any

from bench.cache.adapters import CAPACITY
from bench.cache.multiproc import split_runs_options

WORK = os.path.join(os.path.dirname(__file__), "..", ".work", "cache", "lockhold")
FIELDS = ("follow_cpu", "follow_calls", "records", "wait_cpu", "waits", "held_cpu", "held_wall", "locked_ops",
          "compactions", "loads", "minflt", "nivcsw", "user", "sys")


COUNTERS: dict[str, float] = dict.fromkeys(FIELDS, 0.0)  # one process's, reset as its share starts
_INSTRUMENTED: list[bool] = []


def _instrument(counters: dict[str, float]) -> None:
    """Wrap the protocol's steps with timers adding into *counters* (once, in the process that forks)."""
    if _INSTRUMENTED:
        return
    _INSTRUMENTED.append(True)
    from cache.catchup import CatchUp
    from cache.index import IndexReplay
    from cache.sharedlog import SharedRecordLog

    cpu, wall = time.process_time, time.perf_counter
    follow, lock_following = CatchUp._follow, CatchUp._lock_following
    load, compact = CatchUp._load, IndexReplay._compact_held
    begin, finish = SharedRecordLog.begin, SharedRecordLog.finish
    held_since: list[float] = [0.0, 0.0]  # cpu, wall when begin() returned; 0 outside begin/finish
    depth = [0]  # > 0 while inside the wait loop: its follows are not waiting

    def timed_follow(self: Any, stop: int, next_seq: int, strict: bool = True) -> None:
        c, seq = cpu(), self.next_seq
        try:
            follow(self, stop, next_seq, strict)
        finally:
            spent = cpu() - c
            counters["follow_cpu"] += spent
            counters["follow_calls"] += 1
            counters["records"] += self.next_seq - seq
            if depth[0]:
                counters["wait_cpu"] -= spent

    def timed_lock_following(self: Any, mm: Any) -> None:
        c = cpu()
        depth[0] += 1
        try:
            lock_following(self, mm)
        finally:
            depth[0] -= 1
            counters["wait_cpu"] += cpu() - c
            counters["waits"] += 1

    def timed_begin(self: Any) -> bool:
        changed = begin(self)
        held_since[0], held_since[1] = cpu(), wall()
        return changed

    def timed_finish(self: Any) -> None:
        if held_since[1]:  # a sole open's hand-over calls finish() without a begin()
            counters["held_cpu"] += cpu() - held_since[0]
            counters["held_wall"] += wall() - held_since[1]
            counters["locked_ops"] += 1
        held_since[1] = 0.0
        finish(self)

    def counted_load(self: Any, scan: bool) -> None:
        counters["loads"] += 1
        load(self, scan)

    def counted_compact(self: Any) -> None:
        counters["compactions"] += 1
        compact(self)

    CatchUp._follow = timed_follow  # type: ignore[method-assign]
    CatchUp._lock_following = timed_lock_following  # type: ignore[method-assign]
    CatchUp._load = counted_load  # type: ignore[method-assign]
    IndexReplay._compact_held = counted_compact  # type: ignore[method-assign]
    SharedRecordLog.begin = timed_begin  # type: ignore[method-assign]
    SharedRecordLog.finish = timed_finish  # type: ignore[method-assign]


def run(n: int, ops: list[tuple[int, bool]], values: list[bytes], mean_value: float) -> dict[str, float]:
    """Play *ops* over *n* processes (bench/cache/multiproc.py) and return the summed counters."""
    import bench.cache.multiproc as mp

    counters = COUNTERS
    _instrument(counters)
    tick = _timer_cost()
    workdir = os.path.join(WORK, f"n{n}")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    play = mp._play

    def counted_play(*args: Any) -> None:  # runs in each forked process
        counters.update(dict.fromkeys(FIELDS, 0.0))
        times, usage = os.times(), resource.getrusage(resource.RUSAGE_SELF)
        play(*args)
        after, used = os.times(), resource.getrusage(resource.RUSAGE_SELF)
        counters.update(user=after.user - times.user, sys=after.system - times.system,
                        minflt=used.ru_minflt - usage.ru_minflt, nivcsw=used.ru_nivcsw - usage.ru_nivcsw)
        with open(os.path.join(workdir, f"counters.{os.getpid()}"), "w") as f:
            f.write(repr(counters))

    mp._play = counted_play
    try:
        fig = mp.run("PersistentLRU", workdir, n, ops, values, CAPACITY, mean_value)
    finally:
        mp._play = play
    total = dict.fromkeys(FIELDS, 0.0)
    for name in os.listdir(workdir):
        if name.startswith("counters."):
            with open(os.path.join(workdir, name)) as f:
                for key, value in eval(f.read()).items():  # noqa: S307 - written by this module
                    total[key] += value
    shutil.rmtree(workdir, ignore_errors=True)
    # Each timed span holds about one timer call of its own: take it back out.
    total["follow_cpu"] -= total["follow_calls"] * tick
    total["wait_cpu"] -= total["waits"] * tick
    total["held_cpu"] -= total["locked_ops"] * tick
    return {**fig, **total}


def _timer_cost() -> float:
    """Seconds one time.process_time() call takes here (the best of 5 runs of 20,000)."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(20_000):
            time.process_time()
        best = min(best, (time.perf_counter() - start) / 20_000)
    return best


def _median(rows: list[dict[str, float]], field: Any) -> float:
    return statistics.median(field(row) for row in rows)


def main() -> None:
    """Run each process count in alternated rounds and print the medians per operation."""
    runs = split_runs_options(__doc__.splitlines()[0])
    counts, ops = runs.counts, runs.ops
    got: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    for r in range(runs.rounds):
        for n in counts[r % len(counts):] + counts[: r % len(counts)]:
            got[n].append(run(n, ops, runs.values, runs.mean_value))
    print(f"{len(ops):,} operations split over n processes, {runs.rounds} rounds, medians "
          "(us of CPU per operation unless said)")
    print("  n     ops/s   CPU (user+sys)   follow (calls/op, records/op, us/record)   wait   held (CPU; wall share of "
          "span)   rest   waited   faults  invol.cs  compactions  loads (opens included)")
    per_op = 1e6 / len(ops)
    for n in counts:
        rows = got[n]
        cpu = _median(rows, lambda x: x["cpu_us_per_op"])
        follow = _median(rows, lambda x: x["follow_cpu"] * per_op)
        wait = _median(rows, lambda x: x["wait_cpu"] * per_op)
        held = _median(rows, lambda x: x["held_cpu"] * per_op)
        user = _median(rows, lambda x: x["user"] * per_op)
        system = _median(rows, lambda x: x["sys"] * per_op)
        calls = _median(rows, lambda x: x["follow_calls"] / len(ops))
        records = _median(rows, lambda x: x["records"] / len(ops))
        per_record = _median(rows, lambda x: x["follow_cpu"] / max(1, x["records"]) * 1e6)
        share = _median(rows, lambda x: x["held_wall"] * x["ops_per_s"] / len(ops))
        waited = _median(rows, lambda x: x["waits"] / max(1, x["locked_ops"]))
        faults = _median(rows, lambda x: x["minflt"] / len(ops))
        switches = _median(rows, lambda x: x["nivcsw"] / len(ops))
        print(f"{n:3d} {_median(rows, lambda x: x['ops_per_s']):9,.0f}   {cpu:5.1f} ({user:4.1f}+{system:3.1f})    "
              f"{follow:5.1f} ({calls:.2f}, {records:.2f}, {per_record:.2f})               {wait:4.1f}   "
              f"{held:4.1f}; {share:.0%}                 {cpu - follow - wait - held:5.1f}  {waited:6.0%}"
              f"  {faults:6.2f}  {switches:7.3f}  {_median(rows, lambda x: x['compactions']):11.0f}  "
              f"{_median(rows, lambda x: x['loads']):5.0f}")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
