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
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass

from bench.crawler.nginx import STATUS_ADDRESS, Nginx, free_port, serve
from bench.crawler.workers_kill import politeness
from bench.crawler.workers_measure import (
    CONCURRENCY,
    PY,
    QUICK,
    ROOT,
    TIMEOUT,
    WORK,
    Site,
    Timeline,
    clear,
    machine_busy,
    out_files,
    postgres_cpu,
    read_records,
    reap,
    start,
    timeline,
    wait_quiet,
    write_site,
)
from bench.crawler.workers_profile import profile_run
from bench.crawler.workers_profile import table as profile_table
from bench.results import machine_line, write_section
from fixtures import postgres

ROUNDS = 1 if QUICK else 3

TP_HOSTS, TP_PAGES = (4, 100) if QUICK else (20, 1000)
PER_HOST = 16
LIMITS = ["--delay", "0", "--per-host", str(PER_HOST), "--concurrency", str(CONCURRENCY)]


SINGLE = "crawl (1 process, SQLite)"
W2 = "crawl --workers 2 (SQLite)"
PG2 = "crawl --workers 2 --state postgresql://"
PG1 = "crawl --state postgresql:// (1 worker)"
# The ceiling of any two-process crawl on this machine: two independent single-process crawls,
# 10 seed hosts each (scope = seed hosts, so they split the site exactly), nothing shared
HALVES = f"2 independent crawls, {TP_HOSTS // 2} hosts each (nothing shared: the ceiling)"
CONTENDERS = [SINGLE, W2, PG2, PG1, HALVES]
KEYS = {SINGLE: "single", W2: "w2", PG2: "pg2", PG1: "pg1", HALVES: "halves"}


@dataclass
class Run:
    """One contender's crawl of the throughput site."""

    contender: str
    wall: float
    cpu: float  # client: the crawl process and its workers (user + system)
    nginx_cpu: float
    pg_cpu: float
    requests: int  # at nginx
    useful: int  # 2xx pages recorded
    files: int  # JSONL files written
    exit: int
    check: str
    timeline: Timeline
    others: float = 0.0  # cores other processes of the machine kept busy during the run
    waited: float = 0.0  # seconds spent waiting for a quiet machine first

    @property
    def rate(self) -> float:
        return self.useful / self.wall if self.wall else 0.0

    def per_page(self, seconds: float) -> float:
        return seconds / max(1, self.useful) * 1e6

    @property
    def busy(self) -> float:
        """Cores kept busy on average: client + nginx + PostgreSQL CPU over wall."""
        return (self.cpu + self.nginx_cpu + self.pg_cpu) / self.wall


def throughput_run(contender: str, rnd: int, site: Site, nginx: Nginx,
                   cluster: postgres.Cluster) -> Run:
    """One crawl of the throughput site by *contender*, measured and checked."""
    key = KEYS[contender]
    base = WORK / f"tp-{key}"
    clear(base)
    out = base.with_suffix(".jsonl")
    db = f"tp_r{rnd}_{key}"
    if contender in (PG1, PG2):
        cluster.drop_database(db)
        state = cluster.create_database(db)
    else:
        state = str(base.with_suffix(".db"))
    cmd = [PY, "-m", "crawler", *site.seeds, *LIMITS, "--state", state, "--out", str(out), "-q"]
    if contender in (W2, PG2):
        cmd += ["--workers", "2"]
    if contender == HALVES:
        # one shell runs both and waits: os.wait4 of the shell counts both crawls' CPU
        half = len(site.seeds) // 2
        crawls = [shlex.join([PY, "-m", "crawler", *seeds, *LIMITS, "--state", f"{state}.{tag}",
                              "--out", str(base.with_suffix(f".{tag}.jsonl")), "-q"])
                  for tag, seeds in (("a", site.seeds[:half]), ("b", site.seeds[half:]))]
        cmd = ["sh", "-c", f"{crawls[0]} & {crawls[1]}; s=$?; wait $! || exit; exit $s"]
    waited, _ = wait_quiet()
    requests0, nginx0, pg0 = nginx.requests(), nginx.cpu(), postgres_cpu(cluster.data_dir)
    machine0 = machine_busy()
    proc, started = start(cmd, ROOT, base.with_suffix(".stdout"), base.with_suffix(".stderr"))
    wall, cpu, code = reap(proc, started, TIMEOUT)
    machine = machine_busy() - machine0
    nginx_cpu, pg_cpu = nginx.cpu() - nginx0, postgres_cpu(cluster.data_dir) - pg0
    others = max(0.0, machine - cpu - nginx_cpu - pg_cpu) / wall
    requests = nginx.requests() - requests0 - 1  # the first status request is counted in it
    if contender in (PG1, PG2):
        cluster.drop_database(db)
    stderr = base.with_suffix(".stderr").read_text(errors="replace").strip()
    files = out_files(out)
    records = read_records(files)
    urls = [r["url"] for r in records]
    ok = {r["url"] for r in records if r["status"] is not None and 200 <= r["status"] < 300}
    problems = []
    if code != 0:
        problems.append(f"exit {code}: {stderr[-300:]}")
    elif stderr:
        problems.append(f"stderr: {stderr[-300:]}")
    expected = site.truth.must_fetch
    missing, extra = expected - set(urls), set(urls) - expected
    if missing or extra:
        problems.append(f"{len(missing)} URLs not fetched, {len(extra)} unexpected "
                        f"(e.g. {sorted(missing)[:2]} / {sorted(extra)[:2]})")
    if len(urls) != len(set(urls)):
        problems.append(f"{len(urls) - len(set(urls))} URLs recorded twice")
    if requests != len(records) + len(site.seeds):
        problems.append(f"nginx saw {requests} requests for {len(records)} records + "
                        f"{len(site.seeds)} robots.txt")
    errors = Counter(r["error"].split(":")[0] for r in records if r.get("error"))
    if errors:
        problems.append("record errors: " + ", ".join(f"{k} ×{v}" for k, v in errors.items()))
    check = "; ".join(problems) or f"ok: {len(set(urls)):,} URLs once"
    return Run(contender, wall, cpu, nginx_cpu, pg_cpu, requests, len(ok), len(files), code, check,
               timeline(files), others, waited)


def throughput(cluster: postgres.Cluster, n_rounds: int,
               profile: bool) -> tuple[str, dict[str, dict], str]:
    """Every contender on the throughput site, *n_rounds* times (then, with *profile*, three
    crawls under cProfile); the markdown, the medians, the profile's markdown."""
    prefix = WORK / "nginx-throughput"
    addresses = [f"127.0.1.{i + 1}" for i in range(TP_HOSTS)]
    port = free_port(addresses + [STATUS_ADDRESS])
    site = write_site(WORK / "site-throughput", TP_HOSTS, TP_PAGES, 1, port)
    runs: dict[str, list[Run]] = {c: [] for c in CONTENDERS}
    with serve(prefix, site.roots, port) as nginx:
        for r in range(n_rounds):
            order = CONTENDERS[r % len(CONTENDERS):] + CONTENDERS[:r % len(CONTENDERS)]
            for contender in order:
                print(f"workers throughput round {r + 1}/{n_rounds}: {contender}", file=sys.stderr)
                run = throughput_run(contender, r, site, nginx, cluster)
                runs[contender].append(run)
                print(f"  {run.wall:.2f} s, {run.rate:,.0f} pages/s, client "
                      f"{run.per_page(run.cpu):.0f} µs/page, nginx "
                      f"{run.per_page(run.nginx_cpu):.0f}, PostgreSQL {run.per_page(run.pg_cpu):.0f}, "
                      f"{run.busy:.2f} cores busy, others {run.others:.2f} (waited "
                      f"{run.waited:.0f} s for quiet); {run.check}", file=sys.stderr)
        prof_md = profiles(site, cluster) if profile else ""
    single = runs[SINGLE]
    rows = ["| contender | median wall s | useful pages/s | × single process (pages/s) | client CPU "
            "µs per page | nginx CPU µs per page | PostgreSQL CPU µs per page | all CPU µs per page "
            "| cores busy (all CPU / wall) | other processes, cores busy (max over rounds) | "
            "pages/s while every worker fetched | seconds the last worker fetched alone | most "
            "hosts crawled at once | JSONL files | pages (last round) | check: every URL once, "
            "nginx requests = records + robots.txt (every round) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    medians: dict[str, dict] = {}
    for name in CONTENDERS:
        rs = runs[name]
        m = {
            "wall": statistics.median(x.wall for x in rs),
            "rate": statistics.median(x.rate for x in rs),
            "x": statistics.median(x.rate / s.rate for x, s in zip(rs, single, strict=True)),
            "cpu": statistics.median(x.per_page(x.cpu) for x in rs),
            "nginx": statistics.median(x.per_page(x.nginx_cpu) for x in rs),
            "pg": statistics.median(x.per_page(x.pg_cpu) for x in rs),
            "all": statistics.median(x.per_page(x.cpu + x.nginx_cpu + x.pg_cpu) for x in rs),
            "busy": statistics.median(x.busy for x in rs),
            "hosts": statistics.median(x.timeline.most_hosts for x in rs),
            "others": max(x.others for x in rs),
            "together": statistics.median(x.timeline.together_rate for x in rs),
            "alone": statistics.median(x.timeline.alone for x in rs),
            "ok": all(x.check.startswith("ok") for x in rs),
        }
        medians[name] = m
        checks = " / ".join(sorted({x.check for x in rs}))
        rows.append(f"| {name} | {m['wall']:.2f} | {m['rate']:,.0f} | {m['x']:.2f}× | "
                    f"{m['cpu']:,.0f} | {m['nginx']:,.0f} | {m['pg']:,.0f} | {m['all']:,.0f} | "
                    f"{m['busy']:.2f} | {m['others']:.2f} | {m['together']:,.0f} | "
                    f"{m['alone']:.1f} | {m['hosts']:g} | {rs[-1].files} | {rs[-1].useful:,} | "
                    f"{checks} |")
    waves = ["How the hosts went to the workers and over time (last round; from each record's "
             "fetch_time, 0 = the crawl's first fetch; one line per JSONL file = per worker):", ""]
    for name in CONTENDERS:
        waves += [f"- {name}: " + "; ".join(f"worker {i + 1}: {story}" for i, story in
                                            enumerate(runs[name][-1].timeline.workers))]
    head = (f"**throughput site** — the fixture generator's plain site, {TP_HOSTS} hosts × "
            f"{TP_PAGES:,} pages (+ robots.txt) as static files; `{' '.join(LIMITS)}`, `--out` "
            f"JSONL and `--state` on; {n_rounds} round(s), order rotated, a fresh PostgreSQL "
            "database per run; the × column is the ratio to the single process within each round, "
            "then the median. Per-page figures divide by useful (2xx) pages. Before each run the "
            "bench waits (up to 300 s) for a second in which the whole machine ran ≤ 0.25 cores "
            "busy; 'other processes' is the machine's CPU (/proc/stat) during the run minus "
            "client, nginx and PostgreSQL. 'While every worker fetched' counts records up to the "
            "first worker's last fetch_time; 'alone' is the time from the second-to-last worker's "
            "last page to the last page.")
    return head + "\n\n" + "\n".join(rows) + "\n\n" + "\n".join(waves), medians, prof_md


def profiles(site: Site, cluster: postgres.Cluster) -> str:
    """The single process, 2 SQLite workers and 2 PostgreSQL workers under cProfile."""
    columns: dict[str, dict[str, float]] = {}
    checks = []
    for label, key in ((SINGLE, "single"), (W2, "w2"), (PG2, "pg2")):
        base = WORK / f"prof-{key}"
        if key == "pg2":
            cluster.drop_database("profile")
            state = cluster.create_database("profile")
        else:
            state = str(base.with_suffix(".db"))
        cmd = [PY, "-m", "crawler", *site.seeds, *LIMITS, "--state", state, "--out",
               str(base.with_suffix(".jsonl")), "-q"]
        cmds = [cmd] if key == "single" else [cmd + ["--worker-id", f"profile-{i}"]
                                              for i in (1, 2)]
        per_page, _, check = profile_run(label, cmds, base, ROOT, len(site.truth.must_fetch))
        if key == "pg2":
            cluster.drop_database("profile")
        columns[label] = per_page
        checks.append(f"{label}: {check}")
    return ("**profile** — the throughput site crawled once more by each of: the single process, "
            "2 SQLite workers, 2 PostgreSQL workers, every process under cProfile (the workers "
            "started directly with `--worker-id`, as `--workers 2` starts them); own time grouped "
            "by file (repository files), package (pkg:), stdlib module, or C type/module (C:), "
            "summed over the processes, per useful page. The groups shown are those that differ "
            "most between the columns. The clock is the process's CPU time, which also counts "
            "threads: the SQLite states run their statements in a thread of their own, and that "
            "CPU (with uvloop's own C code) is charged to the Python frame the main thread is in, "
            "mostly the event loop's bottom frame `crawler/engine.py` `run`. Checks: " + "; ".join(checks) + ".\n\n"
            + "\n".join(profile_table(columns)))


# -- the politeness-bound site, one worker killed -------------------------------------------------

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
