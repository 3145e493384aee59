"""Where a dedup run's time and CPU go, stage by stage and process by process: one run of
`dedup -0 -q TREE` in this process with the stages wrapped (timestamps and this process's CPU
from `time.thread_time`/`os.times` at each boundary; every forked process reports its own tasks
on stderr at exit).

    flock /tmp/fanmill-bench.lock .venv/bin/python -m bench.dedup.stages /usr/lib [--threads 1] \
        [--fine]

Run it from the checkout whose dedup is measured. Printed: each wrapped stage's calls, wall and
CPU per process, and a timeline (@CLOCK_MONOTONIC pid event) of the coarse stages, the forks,
the waits in select() and waitpid(); with --fine also every walk task's end and every merge into
the table. The wrappers cost a few microseconds per call (list_dir: one per directory, about
20 ms of a /usr/lib run): compare stages within a run, and rerun.
"""

from __future__ import annotations

import os
import resource
import sys
import time

T0 = time.perf_counter()
C0 = os.times()


def _cpu() -> float:
    return time.process_time()  # this process's (the forked ones count from their fork)


_events: list[tuple[str, float, float]] = []


def _mark(name: str) -> None:
    _events.append((name, time.perf_counter() - T0, _cpu()))


_timeline: list[tuple[float, int, str]] = []  # (CLOCK_MONOTONIC, pid, what): with --timeline


def _at(what: str) -> None:
    _timeline.append((time.clock_gettime(time.CLOCK_MONOTONIC), os.getpid(), what))


def _wrap(owner: object, attr: str, label: str, per_call: bool = False) -> None:
    original = getattr(owner, attr)

    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        w, c = time.perf_counter(), _cpu()
        if per_call:
            _at(label + " >")
        try:
            return original(*args, **kwargs)
        finally:
            if per_call:
                _at(label + " <")
            _tasks.setdefault((os.getpid(), label), [0, 0.0, 0.0])
            row = _tasks[(os.getpid(), label)]
            row[0] += 1
            row[1] += time.perf_counter() - w
            row[2] += _cpu() - c

    setattr(owner, attr, wrapped)


def _wrap_gen(owner: object, attr: str, label: str) -> None:
    original = getattr(owner, attr)

    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        it = original(*args, **kwargs)
        row = _tasks.setdefault((os.getpid(), label), [0, 0.0, 0.0])
        while True:
            w, c = time.perf_counter(), _cpu()
            try:
                item = next(it)
            except StopIteration:
                row[1] += time.perf_counter() - w
                row[2] += _cpu() - c
                return
            row[0] += 1
            row[1] += time.perf_counter() - w
            row[2] += _cpu() - c
            yield item

    setattr(owner, attr, wrapped)


_tasks: dict[tuple[int, str], list] = {}


def _report_child() -> None:
    pid = os.getpid()
    lines = [f"  [child {pid}] {label}: {n} calls, wall {w:.3f} s, cpu {c:.3f} s"
             for (p, label), (n, w, c) in _tasks.items() if p == pid]
    t = os.times()
    lines.append(f"  [child {pid}] cpu since its fork {time.process_time():.3f} s "
                 f"(user {t.user:.2f}, sys {t.system:.2f}), exits at {time.perf_counter() - T0:.3f}"
                 f", minor faults {resource.getrusage(resource.RUSAGE_SELF).ru_minflt}")
    lines += [f"  @{t:.4f} {p} {what}" for t, p, what in _timeline if p == pid]
    os.write(2, ("\n".join(lines) + "\n").encode())


def _timed_compiled(compiled: type) -> type:
    """Return a Python class that forwards to the compiled walk columns (dedup._cwalk), so its
    methods can be wrapped like the Python listing's."""

    class Columns:
        def __init__(self) -> None:
            self._c = compiled()

        def list_dir(self, *args):  # type: ignore[no-untyped-def]
            return self._c.list_dir(*args)

        def pack(self) -> tuple:
            return self._c.pack()

    return Columns


def main() -> int:
    _mark("start (after interpreter)")
    _at("start (after interpreter)")
    import select as select_module

    import dedup.cli as cli
    import dedup.pipeline as pipeline
    import dedup.processes as processes
    import dedup.smallfiles as smallfiles
    import dedup.subtrees as subtrees
    import dedup.table as table_module
    import dedup.tasktree as tasktree
    from dedup import report

    _mark("imported")
    # --fine: a timeline mark at every walk task's end and every merge of one into the table
    # (hundreds of marks; they slow the walk's merges by about a third).
    fine = "--fine" in sys.argv
    if fine:
        sys.argv.remove("--fine")
    for name in ("scan", "candidates", "compare", "_split_heads", "_split_small",
                 "_compare_large_warm", "_packed"):
        _wrap(pipeline._Run, name, name, per_call=name in ("scan", "candidates", "compare",
                                                             "_compare_large_warm"))
    _wrap(smallfiles.SmallFiles, "_compare_small", "_compare_small", per_call=True)
    _wrap(pipeline, "expand_groups", "expand_groups", per_call=True)
    _wrap(report, "iter_null_separated", "iter_null_separated")
    _wrap(cli, "_write_output", "_write_output", per_call=True)
    _wrap(processes, "load_mapped", "load_mapped")
    _wrap(tasktree, "load_mapped", "tasktree.load_mapped")
    _wrap_gen(subtrees, "walk_forked", "walk_forked (generator)")
    _wrap(subtrees._Columns, "list_dir", "list_dir")
    _wrap(subtrees._Columns, "build", "columns.build (a walk task's end)", per_call=fine)
    if subtrees.CompiledColumns is not None:  # a C type takes no wrapper: a Python one around it
        subtrees.CompiledColumns = _timed_compiled(subtrees.CompiledColumns)
        _wrap(subtrees.CompiledColumns, "list_dir", "list_dir (compiled)")
        _wrap(subtrees.CompiledColumns, "pack", "columns.pack (a walk task's end)", per_call=fine)
    _wrap(processes, "take_in_processes", "take_in_processes", per_call=True)
    _wrap_gen(tasktree, "map_tree", "map_tree (generator)")
    _wrap(pipeline.FileTable, "add_packed", "add_packed", per_call=fine)
    _wrap(table_module.SizeBuckets, "add", "SizeBuckets.add", per_call=fine)
    _wrap(table_module.SizeBuckets, "add_int64s", "SizeBuckets.add_int64s", per_call=fine)
    _wrap(pipeline._Run, "all_entries", "all_entries")
    _wrap(select_module, "select", "select (waits)", per_call=True)
    _wrap(tasktree._Tree, "_notes", "tasktree._notes")
    _wrap(tasktree._Tree, "_give", "tasktree._give")
    _wrap(tasktree._Tree, "fork", "tasktree.fork", per_call=True)
    _wrap(os, "fork", "os.fork")
    _wrap(os, "waitpid", "os.waitpid", per_call=True)
    # Children end with os._exit: report first.
    real_exit = os._exit

    def _exit(code: int) -> None:
        _report_child()
        real_exit(code)

    os._exit = _exit  # type: ignore[assignment]
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the report is not wanted
    argv = ["-0", "-q", *sys.argv[1:]]
    _mark("wrapped")
    code = cli.main(argv)
    _mark("main returned")
    pid = os.getpid()
    out = sys.__stderr__
    assert out is not None
    for name, w, c in _events:
        print(f"{w:7.3f} s  cpu {c:6.3f}  {name}", file=out)
    for (p, label), (n, w, c) in _tasks.items():
        if p == pid:
            print(f"  [main] {label}: {n} calls, wall {w:.3f} s, cpu {c:.3f} s", file=out)
    _at("main returned")
    for t, p, what in _timeline:
        if p == pid:
            print(f"  @{t:.4f} {p} {what}", file=out)
    t = os.times()
    print(f"main minor faults {resource.getrusage(resource.RUSAGE_SELF).ru_minflt}", file=out)
    print(f"main cpu {t.user + t.system:.3f} (user {t.user:.3f} sys {t.system:.3f}); "
          f"children {t.children_user + t.children_system:.3f}; exit {code}", file=out)
    return code


if __name__ == "__main__":
    sys.exit(main())
