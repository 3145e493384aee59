"""What a microsecond of work on the crawl's event loop costs the whole crawl.

Crawls the throughput site (cpu_per_page's: nginx, 20 hosts x 1,000 pages, `--delay 0
--per-host 16 --concurrency 128`, SQLite state and JSONL) in alternated pairs: plainly, and with
a pure-Python loop of BURN iterations run on the event loop as each fetch ends (it touches no
crawl data). Each crawl reports its main thread's CPU time and the loop's own; the rest of the
main thread (main - loop) is compared between the two crawls of a pair. A figure above zero is
work the crawl itself did more slowly because the loop ran (cProfile counts the same calls in
both). With nginx left to the scheduler (`--server-cpu none`), that is what a loop costs: the
rest rose by about as much as the loop took (+17 µs a page for 21 µs; the first runs before
cpu_per_page kept nginx on one core); with nginx on one core, it does not.
`--sleep US` puts a sleep of US µs in the loop's place: the main thread then does no work of its
own, only gives up its core once a page (the sleep's system call and switch are what it costs).
nginx is kept on the last CPU by default, as in cpu_per_page (see server_core() in
bench/crawler/nginx.py).
`python -m bench.crawler.loop_burden [--pairs 6] [--burn 520 | --sleep 20] [--server-cpu N|none]`;
writes section crawler-loop-burden or crawler-loop-sleep of bench/RESULTS.md (-unpinned added
to the name with --server-cpu none).
"""

from __future__ import annotations

import argparse
import atexit
import statistics
import subprocess
import sys
import time

from bench.crawler.cpu_per_page_measure import HOSTS, LIMITS, PY, ROOT, WORK, write_plain_site
from bench.crawler.nginx import free_port, parse_cpu, serve, server_core
from bench.results import machine_line, write_section


def child(burn: int, argv: list[str]) -> int:
    """Run `crawl argv` with *burn* loop iterations after each fetch (a negative *burn*: a sleep
    of -burn µs instead); report CPU at exit."""
    from crawler import engine
    from crawler.cli import main

    burned = [0.0]
    fetch_page = engine._Crawl._fetch_page  # noqa: SLF001 - the bench wraps the engine's step

    async def burdened(self, ready):  # type: ignore[no-untyped-def]
        try:
            return await fetch_page(self, ready)
        finally:
            started, x = time.thread_time(), 0
            if burn < 0:
                time.sleep(-burn / 1e6)
            for i in range(burn):
                x += i
            burned[0] += time.thread_time() - started

    if burn:
        engine._Crawl._fetch_page = burdened  # noqa: SLF001
    atexit.register(lambda: print(f"loop-burden main {time.thread_time():.4f} "
                                  f"burned {burned[0]:.4f}", file=sys.stderr))
    return main(argv)


def crawl(burn: int, seeds: list[str], pages: int) -> tuple[float, float]:
    """(main thread µs per page outside the loop, the loop's µs per page) of one crawl."""
    work = WORK / "loop-burden"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    proc = subprocess.run(
        [PY, "-m", "bench.crawler.loop_burden", "--child", str(burn), *seeds, *LIMITS,
         "--state", str(work / "s.db"), "--out", str(work / "out.jsonl"), "-q"],
        cwd=ROOT, capture_output=True, text=True, check=False)
    line = [x for x in proc.stderr.splitlines() if x.startswith("loop-burden ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"crawl failed ({proc.returncode}): {proc.stderr[-2000:]}")
    fields = line[-1].split()
    main, burned = float(fields[2]), float(fields[4])
    fetched = (work / "out.jsonl").read_text().count("\n")
    if fetched != pages:
        raise RuntimeError(f"the crawl recorded {fetched} pages, not {pages}")
    return (main - burned) / pages * 1e6, burned / pages * 1e6


def main(argv: list[str]) -> tuple[str, str]:
    """Alternate plain and burdened crawls; return (section name, markdown)."""
    parser = argparse.ArgumentParser(prog="python -m bench.crawler.loop_burden",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=6)
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--burn", type=int, default=520, help="loop iterations per fetch")
    how.add_argument("--sleep", type=int, metavar="US",
                     help="sleep this many µs per fetch instead of the loop")
    parser.add_argument("--server-cpu", default=server_core(), metavar="N|none",
                        type=parse_cpu,
                        help=f"the CPU nginx is kept on (default the last: {server_core()})")
    opts = parser.parse_args(argv)
    burn = -opts.sleep if opts.sleep else opts.burn
    what = (f"a sleep of {opts.sleep} µs" if opts.sleep
            else f"a loop of {opts.burn} iterations")
    port = free_port([f"127.0.1.{i + 1}" for i in range(HOSTS)])
    roots, target = write_plain_site(port)
    rows, extra, loop_cost = [], [], []
    with serve(WORK / "nginx", roots, port, cpu=opts.server_cpu):
        crawl(0, target.seeds, len(target.expected))  # warm-up: page cache, nginx
        for n in range(opts.pairs):
            order = (0, burn) if n % 2 == 0 else (burn, 0)
            got = {b: crawl(b, target.seeds, len(target.expected)) for b in order}
            (plain, _), (rest, burned) = got[0], got[burn]
            extra.append(rest - plain)
            loop_cost.append(burned)
            rows.append(f"| {n + 1} | {plain:.0f} | {rest:.0f} | {burned:.1f} | "
                        f"{rest - plain:+.1f} |")
    section = ("crawler-loop-sleep" if opts.sleep else "crawler-loop-burden") + (
        "-unpinned" if opts.server_cpu is None else "")
    where = ("nginx wherever the scheduler puts it" if opts.server_cpu is None
             else f"nginx kept on CPU {opts.server_cpu}")
    return section, "\n".join([
        f"## {section} — what disturbing the crawl's event loop costs the rest of the crawl "
        "(issue 14)", "",
        f"`{' '.join(['python -m bench.crawler.loop_burden', *argv])}` · {machine_line()}",
        "",
        f"Throughput site, {len(target.expected):,} pages, {where}, {opts.pairs} alternated pairs; "
        f"{what} after each fetch. µs per page of the main thread (user and system CPU).", "",
        "| pair | plain: main thread | burdened: main thread outside the burden | the burden | "
        "difference |", "|---:|---:|---:|---:|---:|", *rows, "",
        f"Median: {what} costs {statistics.median(loop_cost):.1f} µs of CPU a page and the rest "
        f"of the main thread {statistics.median(extra):+.1f} µs a page with it."])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        raise SystemExit(child(int(sys.argv[2]), sys.argv[3:]))
    name, markdown = main(sys.argv[1:])
    write_section(name, markdown)
    print(markdown)
