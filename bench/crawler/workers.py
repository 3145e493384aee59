"""Many workers, one frontier (issue 16): `crawl --workers N` on SQLite and PostgreSQL, against nginx.

`python -m bench.crawler.workers [--rounds N]` (also run by `make bench-crawler`; FANMILL_BENCH_QUICK=1
shrinks everything for a smoke run). One private nginx (bench/crawler/nginx.py) per scenario and one
throwaway PostgreSQL cluster (fixtures/postgres.py, started with fast=False: PostgreSQL's durable
defaults, fsync and synchronous_commit on) for the whole run.

1. Throughput site: the fixture generator's plain site, 20 hosts x 1,000 pages as static files,
   `--delay 0 --per-host 16 --concurrency 128`, SQLite or PostgreSQL state and JSONL on. Contenders:
   `crawl` (one process, SQLite), `crawl --workers 2` (SQLite), `crawl --workers 2 --state
   postgresql://...` and `crawl --state postgresql://...` (one worker); a fresh database per run.
   Rounds with the order rotated, medians, ratios to the single process taken within each round.
   Client CPU: os.wait4 of the crawl (its workers included: the parent reaps them); nginx CPU from
   /proc/<pid>/schedstat; PostgreSQL CPU: utime + stime of the postmaster and its children from
   /proc, plus the postmaster's cutime + cstime (backends that exited). Every run is checked: the
   union of the per-worker JSONL files holds every URL of the generator's truth exactly once, and
   nginx's request count (stub_status) equals the records plus one robots.txt per host.
2. Politeness-bound site: 20 hosts x 50 pages, `crawl --workers 4 --state postgresql://...
   --delay 0.1 --per-host 1 --lease 5`; once `crawl status --json` shows a worker has recorded
   KILL_AFTER pages it gets SIGKILL. nginx logs every request ($msec, $request_time, address): the
   log is scored by bench/crawler/score.py against the generator's truth (gaps between request
   starts per host, requests in flight per host, missed, disallowed, out of scope, refetches).

Scenario 1 lives in workers_throughput.py, scenario 2 in workers_kill.py; this module runs them
and writes the section with its verdicts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile

from bench.crawler.workers_kill import politeness
from bench.crawler.workers_measure import QUICK, ROOT, WORK
from bench.crawler.workers_throughput import HALVES, PG2, SINGLE, TP_HOSTS, W2, throughput
from bench.results import machine_line, write_section
from fixtures import postgres

ROUNDS = 1 if QUICK else 3


def verdicts(medians: dict[str, dict]) -> list[str]:
    """The throughput targets of issue 16, each with its figure and the CPU split behind it."""
    lines = []
    single = medians[SINGLE]
    for name, target, what in ((W2, 1.5, "`--workers 2` (SQLite) ≥ 1.5× `--workers 1` (the "
                                          "single-process crawl)"),
                               (PG2, 1.3, "PostgreSQL with 2 workers ≥ 1.3× the single-process "
                                          "SQLite crawl")):
        m = medians[name]
        met = m["x"] >= target
        # on 2 cores, nothing can go faster than 2 cores / (all CPU per page)
        ceiling = os.cpu_count() / (m["all"] / 1e6)
        text = f"- {what}: {m['x']:.2f}× — " + ("met" if met else
                                               f"**not met** (short by {target - m['x']:.2f}×, "
                                               f"{(target - m['x']) / target:.0%} of the target)")
        together = m["together"] / (single["together"] or 1)
        text += (f". While both workers fetched they made {m['together']:,.0f} pages/s = "
                 f"{together:.2f}× the single process's rate over its crawl "
                 f"({single['together']:,.0f}); then one worker fetched alone for "
                 f"{m['alone']:.1f} s of {m['wall']:.1f} s (at most {m['hosts']:g} hosts were crawled "
                 f"at once; the workers split the hosts by fair share, the single process "
                 f"crawls all {TP_HOSTS}). CPU split per page: client "
                 f"{m['cpu']:,.0f} µs ({m['cpu'] / single['cpu']:.2f}× "
                 f"the single process's {single['cpu']:,.0f}), nginx {m['nginx']:,.0f} µs, "
                 f"PostgreSQL {m['pg']:,.0f} µs; {m['busy']:.2f} of {os.cpu_count()} cores busy "
                 f"(the single process: {single['busy']:.2f}). With every core busy at this CPU per "
                 f"page the machine tops out at {ceiling:,.0f} pages/s = "
                 f"{ceiling / single['rate']:.2f}× the single process")
        lines.append(text + ".")
    halves = medians.get(HALVES)
    if halves:
        lines.append(
            f"- the ceiling of two processes on this machine, measured: {HALVES}, "
            f"{halves['x']:.2f}× the single process ({halves['cpu']:,.0f} µs client CPU per page, "
            f"{halves['busy']:.2f} cores busy). `--workers 2` reaches "
            f"{medians[W2]['x'] / halves['x']:.0%} of it on SQLite, "
            f"{medians[PG2]['x'] / halves['x']:.0%} on PostgreSQL"
            + (f"; a 1.5× target above {halves['x']:.2f}× is out of reach of any design here"
               if halves["x"] < 1.5 else "") + ".")
    once = all(m["ok"] for m in medians.values())
    lines.append("- every run fetched every page exactly once (union of the workers' JSONL, "
                 "nginx's request count): " + ("met" if once else "**not met** (see the check "
                                              "column)"))
    return lines


def code_state() -> str:
    """The crawler's code as this run saw it: the commit, and whether crawler/ had changes not
    committed (another engineer may be editing it)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()

    changed = git("status", "--porcelain", "--", "crawler")
    digest = hashlib.sha1(git("diff", "HEAD", "--", "crawler").encode()).hexdigest()[:10]
    return (f"commit {git('rev-parse', '--short', 'HEAD')}"
            + (f" + uncommitted changes in crawler/ ({len(changed.splitlines())} file(s), "
               f"diff sha1 {digest})" if changed else ", crawler/ clean"))


def commits_between(before: str, after: str) -> str:
    """The commits touching crawler/ from code_state *before* to *after* (one line each)."""
    first, last = before.split()[1].rstrip(","), after.split()[1].rstrip(",")
    if first == last:
        return ""
    log = subprocess.run(["git", "log", "--format=%h %s", f"{first}..{last}", "--", "crawler"],
                         cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return "; ".join(line[:100] for line in log.splitlines()) or "none touch crawler/"


def _options(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.crawler.workers", description=__doc__.split(
        "\n")[0])
    p.add_argument("--rounds", type=int, default=ROUNDS, help=f"throughput rounds (default {ROUNDS})")
    p.add_argument("--part", choices=("all", "throughput", "politeness"), default="all",
                   help="only one scenario: printed, bench/RESULTS.md left alone")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                   help="after the throughput rounds, one crawl per kind under cProfile "
                        "(default on)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    """Run the scenarios; with --part all, write the "crawler-workers" section of RESULTS.md."""
    opts = _options(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: nginx and PostgreSQL stop
    code_before = code_state()
    cluster = postgres.start(tempfile.mkdtemp(prefix="fanmill-bench-pg-"), fast=False)
    try:
        pg_version = subprocess.run([str(cluster.tools.bindir / "postgres"), "--version"],
                                    capture_output=True, text=True).stdout.strip()
        nginx_version = subprocess.run(["nginx", "-v"], capture_output=True,
                                       text=True).stderr.strip().split("/")[-1]
        parts = []
        medians: dict[str, dict] = {}
        if opts.part in ("all", "throughput"):
            t_md, medians, prof_md = throughput(cluster, opts.rounds, opts.profile)
            parts.append(t_md)
        polite: list[tuple[str, str, bool]] = []
        if opts.part in ("all", "politeness"):
            p_md, polite = politeness(cluster)
            parts.append(p_md)
    finally:
        cluster.destroy()
    import asyncpg

    code_after = code_state()
    code = code_before if code_after == code_before else (
        f"**changed during the run** (another engineer works on it): {code_before} at the start, "
        f"{code_after} at the end; commits to crawler/ in between: "
        f"{commits_between(code_before, code_after) or '-'}")

    verdict = verdicts(medians) if medians else []
    verdict += [f"- politeness with a kill: {t}: {m} — {'met' if ok else '**not met**'}"
                for t, m, ok in polite]
    md = "\n\n".join([
        "## crawler-workers — many workers, one frontier: SQLite and PostgreSQL (issue 16)",
        machine_line(),
        f"Command: `python -m bench.crawler.workers --rounds {opts.rounds}` (also in `make "
        f"bench-crawler`){' (quick mode)' if QUICK else ''}. **The machine has 2 cores and is "
        "shared**: compare ratios within this run. nginx "
        f"{nginx_version} (private, 1 worker, sendfile; access log only for the politeness site), "
        f"{pg_version} (throwaway cluster from fixtures/postgres.py, **durable**: fast=False, so "
        "fsync, synchronous_commit and full_page_writes on, other settings default; Unix socket; "
        f"it runs on the same 2 cores), asyncpg {asyncpg.__version__}. Crawler code: {code}. "
        "Wall = spawn to exit. "
        "Client CPU = user + system of the `crawl` process and the workers it reaps (os.wait4); "
        "nginx CPU = master + worker (/proc/<pid>/schedstat); PostgreSQL CPU = utime + stime of "
        "the postmaster and its live children plus the postmaster's cutime + cstime (backends "
        "that exited), from /proc, before and after each run.",
        *parts,
        "Targets:\n" + "\n".join(verdict),
        *([prof_md] if medians and prof_md else [])])
    if opts.part == "all":
        write_section("crawler-workers", md)
    print(md)
    return md


if __name__ == "__main__":
    main(sys.argv[1:])
