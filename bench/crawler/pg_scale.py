"""The crawl frontier in PostgreSQL at scale, measured without HTTP (issue 16, "scale on paper").

`python -m bench.crawler.pg_scale` (also run by `make bench-crawler`; FANMILL_BENCH_QUICK=1 shrinks it
to 20,000 URLs and 5,000 pages for a smoke run; `--report` re-renders the last figures). Writes the
"crawler-pg-scale" section of bench/RESULTS.md (bench/crawler/pg_report.py). It measures
crawler/state/shared_pg.py as it is (its statements are recorded as PgShared sends them, never
copied), driven the way crawler/engine_worker.py drives it.

1. A throwaway cluster (fixtures/postgres.py, fast=False: fsync, synchronous_commit and
   full_page_writes on, every other setting PostgreSQL's default) with pg_stat_statements and
   auto_explain loaded (ALTER SYSTEM SET shared_preload_libraries, then a restart).
2. The frontier: 1,000,000 URLs over 10,000 hosts (http://h{i}.example/p{j}), added in shuffled
   order through PgShared.add_discovered in batches of 10,000; then VACUUM ANALYZE and CHECKPOINT.
3. W=4 simulated workers, each its own process with its own PgShared connection and worker id,
   run the engine's loop with instant fetches (bench/crawler/pg_workload.py) until 200,000 pages
   are recorded. Measured: pages/s, statements per page (client count, and pg_stat_statements per
   statement: calls, execution time, WAL bytes), WAL bytes per page (pg_current_wal_lsn), table
   and index sizes before and after, live/dead tuples and autovacuum runs sampled every few
   seconds, PostgreSQL server CPU (postmaster + children from /proc) and client CPU per page.
4. EXPLAIN (ANALYZE, BUFFERS) of every statement of one refill + commit + release + idle wait on
   the big table (before and after the run, custom and generic plans); how the claim grows with
   hosts (and live workers, and hosts without work), the lease with URLs per owned host, and
   `outstanding` and `redirects` (a worker's idle wait and start) with the waiting URLs.
5. asyncpg (the crawler's driver) against psycopg 3 (async) on the same loop: PgShared's own
   methods over a psycopg adapter (bench/crawler/pg_psycopg.py), text and binary formats, W=1 and
   W=4, 100,000 URLs, 20,000 pages, a fresh database each run, rounds rotating the order.

This module runs the whole and writes the section; the sizes are in pg_scale_settings.py, the
cluster and small queries in pg_queries.py, the worker runs and drivers in pg_run_workers.py,
the plans in pg_plans.py, the statements' growth in pg_statement_scaling.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from importlib.metadata import version as version_of
from typing import Any

from bench.crawler.pg_plans import explain_cycle, slow_plans
from bench.crawler.pg_queries import connect, load, make_cluster, settle, sizes, wal_lsn
from bench.crawler.pg_report import render
from bench.crawler.pg_run_workers import drivers, run_workers
from bench.crawler.pg_scale_settings import (
    CLAIM_HOSTS,
    CLAIM_SPARSE,
    DRV_HOSTS,
    DRV_PAGES,
    HOSTS,
    LEASE_BACKGROUND,
    LEASE_PER_HOST,
    LEASE_ROOM,
    PAGES,
    PER_HOST,
    QUICK,
    ROUNDS,
    SEED,
    WAITING,
    W,
    log,
)
from bench.crawler.pg_server_cpu import postmaster_pid, server_cpu
from bench.crawler.pg_statement_scaling import claim_scaling, frontier_scaling, lease_scaling
from bench.results import machine_line, write_section
from fixtures.postgres import Cluster

WORK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".work",
                    "crawler-pg-scale")


async def scale_run(cluster: Cluster, name: str) -> dict[str, Any]:
    """Load the frontier into a fresh database, W workers until PAGES pages, the figures."""
    url = cluster.create_database(name)
    cluster.psql("CREATE EXTENSION pg_stat_statements", name)
    postmaster = postmaster_pid(cluster.data_dir)
    conn = await connect(url)
    log(f"{name}: loading {HOSTS * PER_HOST:,} URLs over {HOSTS:,} hosts")
    wal0, srv0 = await wal_lsn(conn), server_cpu(postmaster)
    part: dict[str, Any] = dict(load=await load(url, HOSTS, PER_HOST, SEED))
    await asyncio.sleep(0.5)  # the loader's backend has exited: its CPU is in the postmaster's
    part["load"].update(wal=await wal_lsn(conn) - wal0, server_cpu=server_cpu(postmaster) - srv0)
    log(f"{name}: loaded in {part['load']['seconds']:.1f} s; VACUUM ANALYZE, CHECKPOINT")
    await settle(conn)
    part["sizes0"] = await sizes(conn)
    part["plans0"] = await explain_cycle(url, HOSTS, PER_HOST)
    await settle(conn)
    await conn.close()
    log(f"{name}: {W} workers until {PAGES:,} pages")
    part["loadavg_run_start"] = open("/proc/loadavg").read().split()[:3]
    log_at = cluster.log_file.stat().st_size
    run = await run_workers(cluster, url, "asyncpg", W, PAGES, HOSTS, PER_HOST, sample=True)
    part["run"] = run
    part["loadavg_run_end"] = open("/proc/loadavg").read().split()[:3]
    part["slow"] = slow_plans(cluster, log_at)
    log(f"{name}: {run['pages']:,} pages in {run['wall']:.1f} s: "
         f"{run['pages'] / run['wall']:,.0f} pages/s, server "
         f"{run['server_cpu'] / run['pages'] * 1e6:,.0f} µs/page")
    conn = await connect(url)
    part["sizes1"] = await sizes(conn)
    part["status"] = {r[0]: r[1] for r in await conn.fetch(
        "SELECT status, count(*) FROM urls GROUP BY status")}
    part["hosts_left"] = await conn.fetchval(
        "SELECT count(*) FROM hosts WHERE due_at IS NOT NULL")
    part["record_bytes"] = float(await conn.fetchval(
        "SELECT avg(octet_length(record)) FROM urls WHERE status = 'fetched'"))
    await conn.close()
    part["plans1"] = await explain_cycle(url, HOSTS, PER_HOST)
    cluster.drop_database(name)
    return part


async def measure(cluster: Cluster) -> dict[str, Any]:
    """Every figure of the section, as one JSON-able dict."""
    import crawler

    fig: dict[str, Any] = dict(quick=QUICK, hosts=HOSTS, per_host=PER_HOST, target=PAGES, w=W,
                               loadavg=open("/proc/loadavg").read().split()[:3],
                               lease_room=LEASE_ROOM, claim_sparse=CLAIM_SPARSE,
                               lease_background=LEASE_BACKGROUND)
    fig["commit"] = _git_head(os.path.dirname(os.path.dirname(crawler.__file__)))
    fig["settings"] = {k: cluster.psql(f"SHOW {k}") for k in (
        "server_version", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers",
        "max_wal_size", "checkpoint_timeout", "autovacuum_naptime", "wal_compression",
        "shared_preload_libraries", "jit")}
    fig["versions"] = {p: version_of(p) for p in ("asyncpg", "psycopg", "uvloop")}
    fig["drv"] = dict(hosts=DRV_HOSTS, per_host=PER_HOST, pages=DRV_PAGES, rounds=ROUNDS)
    fig["run"] = await scale_run(cluster, "scale")
    log("claim, lease, outstanding and redirects scaling")
    fig["claim_scaling"] = await claim_scaling(cluster, CLAIM_HOSTS)
    fig["lease_scaling"] = await lease_scaling(cluster, LEASE_PER_HOST)
    fig["frontier_scaling"] = await frontier_scaling(cluster, WAITING)
    log(f"drivers: {ROUNDS} round(s)")
    fig["drivers"] = await drivers(cluster)
    fig["commit_end"] = _git_head(os.path.dirname(os.path.dirname(crawler.__file__)))
    return fig


def _git_head(repo: str) -> dict[str, Any]:
    """The commit the crawler's code is at, and whether crawler/ differs from it."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                              check=False).stdout.strip()

    return dict(head=git("rev-parse", "--short", "HEAD"),
                crawler_dirty=bool(git("status", "--porcelain", "--", "crawler")))


CODE_PATHS = ("crawler/state", "crawler/engine.py", "crawler/engine_worker.py",
              "crawler/engine_hosts.py", "crawler/engine_state.py")


def _same_code(repo: str, a: str, b: str) -> bool:
    """Whether commits *a* and *b* differ in the code the bench runs only by docstrings and
    comments (the modules' syntax trees, docstrings dropped, are equal)."""
    import ast
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                              check=True).stdout

    def tree(commit: str, path: str) -> str:
        mod = ast.parse(git("show", f"{commit}:{path}"))
        for node in ast.walk(mod):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                body.pop(0)
        return ast.dump(mod)

    try:
        changed = git("diff", "--name-only", a, b, "--", *CODE_PATHS).split()
        return all(p.endswith(".py") and tree(a, p) == tree(b, p) for p in changed)
    except (subprocess.CalledProcessError, SyntaxError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Measure (or, with --report, re-render the last figures) and write the section."""
    args = sys.argv[1:] if argv is None else argv
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, "figures-quick.json" if QUICK else "figures.json")
    if "--report" in args:
        with open(path, encoding="utf-8") as f:
            fig = json.load(f)
    else:
        cluster = make_cluster()
        try:
            fig = asyncio.run(measure(cluster))
        finally:
            cluster.destroy()
        fig["machine"] = machine_line()
        with open(path, "w", encoding="utf-8") as f:
            json.dump(fig, f, indent=1, default=str)
    start, end = fig.get("commit", {}), fig.get("commit_end", {})
    if start.get("head") and end.get("head") and start["head"] != end["head"]:
        import crawler

        fig["code_same"] = _same_code(os.path.dirname(os.path.dirname(crawler.__file__)),
                                      start["head"], end["head"])
    markdown = render(fig)
    write_section("crawler-pg-scale", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
