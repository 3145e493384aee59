"""Alternated A/B runs of dedup variants (and jdupes) on one tree: wall and CPU medians, and the
paired ratios (wall and CPU) of every variant to the first.

    git archive e9f0d5a dedup cache | tar -x -C /tmp/ab/base      # a variant: a directory
    flock /tmp/fanmill-bench.lock .venv/bin/python -m bench.dedup.ab /root/.pyenv/versions \\
        --rounds 15 /tmp/ab/base . jdupes

Each variant is a directory holding a `dedup` (and `cache`) package, run as `python -m dedup -0
-q TREE` from that directory (bytecode compiled first, as an install does) by the Python of
bench/.venv-dedup, where fanmill is installed as users install it (not editable: the editable
install's finder costs every start ~10 ms); `jdupes` runs
`jdupes -r -q -0 TREE`. One warm-up each, then rounds in a rotating order; with --cold no
warm-up, and the page cache dropped before every run (as bench.dedup.realtrees' cold rows). CPU is the run's
user + sys time, its forked processes included. Compare only ratios within one run: the
machine is shared. The figures of d02cfbf's message came from this harness (then a scratch
script).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time

from bench.dedup.__main__ import installed_python
from bench.dedup.realtrees import drop_caches

PYTHON = sys.executable  # main() makes it bench/.venv-dedup's (bench.dedup.__main__.installed_python)


def run_once(variant: str, tree: str, extra: list[str]) -> tuple[float, float]:
    """Run one variant on *tree*; return (wall seconds, CPU seconds)."""
    if variant == "jdupes":
        argv, cwd = ["jdupes", "-r", "-q", "-0", tree], None
    else:
        argv, cwd = [PYTHON, "-m", "dedup", "-0", "-q", *extra, tree], variant
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    with open(os.devnull, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, cwd=cwd, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    # A failed run is not a fast one; dedup's 3 (a file unreadable, or changed while read: the
    # tree is a live one) is a whole run.
    if os.waitstatus_to_exitcode(status) not in (0, 3 if variant != "jdupes" else 0):
        raise SystemExit(f"{' '.join(argv)} (in {cwd or os.getcwd()}) exited with {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime


def _cpu_busy() -> float:
    """Return the CPU seconds all processes of the machine have used so far (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit: float = 120.0) -> None:
    """Wait (up to *limit* seconds) until other processes use under a tenth of a core."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = _cpu_busy()
        time.sleep(0.3)
        if _cpu_busy() - before < 0.03:
            return
        time.sleep(1.0)


def _regular_files(tree: str) -> list[str]:
    out = []
    for top, _, names in os.walk(tree):
        for name in names:
            path = os.path.join(top, name)
            if os.path.isfile(path) and not os.path.islink(path):
                out.append(path)
    return out


def evict(paths: list[str]) -> None:
    """Drop *paths* from the page cache (their clean pages: posix_fadvise DONTNEED)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup.ab", description=__doc__.split("\n")[0])
    parser.add_argument("tree", help="the tree to scan (warm page cache unless --cold)")
    parser.add_argument("variants", nargs="+", help="directories holding a dedup package, or jdupes")
    parser.add_argument("--rounds", type=int, default=9, help="rounds (default: %(default)s)")
    parser.add_argument("--dedup-args", default="", help="extra dedup options, e.g. '--threads 1'")
    parser.add_argument("--cold", action="store_true",
                        help="drop the page cache before every run, no warm-up (root only)")
    parser.add_argument("--evict", type=float, default=0.0, metavar="FRACTION",
                        help="before every run, drop this fraction of the tree's files, picked "
                             "at random, from the page cache (posix_fadvise DONTNEED): a page "
                             "cache warm but for a few files, as a kernel paging out idle file "
                             "pages leaves it (the bench machine's DAMON does)")
    parser.add_argument("--quiet", action="store_true",
                        help="wait for the machine to be idle before every run, and leave out "
                             "the rounds where another process took CPU during a run (the "
                             "machine is shared)")
    args = parser.parse_args(argv)
    if args.cold and not drop_caches():
        parser.error("--cold needs root: the page cache could not be dropped")
    variants = [v if v == "jdupes" else os.path.abspath(v) for v in args.variants]
    args.tree = os.path.abspath(args.tree)  # the variants run from their own directories
    if not os.path.isdir(args.tree):
        parser.error(f"{args.tree} is not a directory")
    extra = args.dedup_args.split()
    global PYTHON
    PYTHON = installed_python()  # a variant's dedup, in its directory, comes first on sys.path
    for v in variants:
        if v != "jdupes":
            subprocess.run([PYTHON, "-m", "compileall", "-q", os.path.join(v, "dedup"),
                            os.path.join(v, "cache")], check=True, stdout=subprocess.DEVNULL)
    if not args.cold:
        for v in variants:
            run_once(v, args.tree, extra)  # warm-up
    files = _regular_files(args.tree) if args.evict else []
    pick = random.Random(18)
    runs: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    disturbed: set[int] = set()  # rounds where other processes took CPU during a run
    for r in range(args.rounds):
        for v in variants[r % len(variants):] + variants[: r % len(variants)]:
            if args.cold:
                drop_caches()
            elif files:
                evict(pick.sample(files, round(args.evict * len(files))))
            if args.quiet:
                wait_quiet()
            before = _cpu_busy()
            wall, cpu = run_once(v, args.tree, extra)
            if _cpu_busy() - before - cpu > 0.1 * wall:
                disturbed.add(r)
            runs[v].append((wall, cpu))
    print(f"{len(disturbed)} of {args.rounds} rounds had another process take over a tenth of "
          f"a core during a run" + (": figures below for the other rounds" if
                                    args.quiet and len(disturbed) < args.rounds else ""))
    if args.quiet and len(disturbed) < args.rounds:
        runs = {v: [x for r, x in enumerate(rs) if r not in disturbed] for v, rs in runs.items()}
    first = statistics.median(w for w, _ in runs[variants[0]])
    jdupes = statistics.median(w for w, _ in runs["jdupes"]) if "jdupes" in runs else None
    for v in variants:
        wall = statistics.median(w for w, _ in runs[v])
        cpu = statistics.median(c for _, c in runs[v])
        walls = sorted(w for w, _ in runs[v])
        line = (f"{v:32s} wall {wall:.3f} (min {walls[0]:.3f}, 90th pct "
                f"{walls[min(len(walls) - 1, round(0.9 * (len(walls) - 1)))]:.3f}, "
                f"mean {statistics.fmean(walls):.3f}) cpu {cpu:.3f}")
        line += f"  vs first {wall / first:.3f}"
        if jdupes:
            line += f"  vs jdupes {wall / jdupes:.3f}"
        print(line)
    a = variants[0]
    for b in variants[1:]:  # every variant against the first, wall then CPU, run by run
        for what, k in (("wall", 0), ("cpu", 1)):
            pairs = [y[k] / x[k] for x, y in zip(runs[a], runs[b], strict=True)]
            print(f"paired {what} {b} / {a}: median {statistics.median(pairs):.3f}, "
                  f"range {min(pairs):.3f}-{max(pairs):.3f} ({len(pairs)} pairs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
