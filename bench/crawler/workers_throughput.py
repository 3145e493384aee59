"""The throughput scenario of bench/crawler/workers.py: each contender crawls the plain site.

`crawl` in one process, with `--workers 2`, on SQLite and PostgreSQL, and two independent halves
(the ceiling); each run checked against the generator's truth and nginx's request count, then
the table, the per-worker timelines and (optionally) the cProfile columns.
"""

from __future__ import annotations

import shlex
import statistics
import sys
from collections import Counter
from dataclasses import dataclass

from bench.crawler.nginx import STATUS_ADDRESS, Nginx, free_port, serve
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
from fixtures import postgres

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
        """Useful pages per wall second."""
        return self.useful / self.wall if self.wall else 0.0

    def per_page(self, seconds: float) -> float:
        """*seconds* of CPU in microseconds per useful page."""
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
