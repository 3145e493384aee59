"""The crawl frontier in PostgreSQL at scale, measured without HTTP (issue 16, "scale on paper").

`python -m bench.crawler.pg_scale` (also run by `make bench-crawler`; FANMILL_BENCH_QUICK=1 shrinks it
to 20,000 URLs and 5,000 pages for a smoke run; `--report` re-renders the last figures). Writes the
"crawler-pg-scale" section of bench/RESULTS.md (bench/crawler/pg_report.py).

1. A throwaway cluster (fixtures/postgres.py, fast=False: fsync, synchronous_commit and
   full_page_writes on, every other setting PostgreSQL's default) with pg_stat_statements and
   auto_explain loaded (ALTER SYSTEM SET shared_preload_libraries, then a restart).
2. The frontier: 1,000,000 URLs over 10,000 hosts (http://h{i}.example/p{j}), added in shuffled
   order through PgShared.add_discovered in batches of 10,000; then VACUUM ANALYZE and CHECKPOINT.
3. W=4 simulated workers, each its own process with its own PgShared connection and worker id,
   run claim/record cycles (bench/crawler/pg_workload.py) until 200,000 pages are recorded.
   Measured: cycles/s, pages/s, statements per page (client count, and pg_stat_statements per
   statement: calls, execution time, WAL bytes), WAL bytes per page (pg_current_wal_lsn),
   table and index sizes before and after, live/dead tuples and autovacuum runs sampled every few
   seconds, PostgreSQL server CPU (postmaster + children from /proc) and client CPU per page.
   Twice, on fresh databases: shared_pg.py as it is, and with the two bench-only fixes of
   bench/crawler/pg_fixes.py (an index for host_urls; hosts made due only by links that added a
   URL). The crawler's code is not changed.
4. EXPLAIN (ANALYZE, BUFFERS) of every statement of one cycle on the big table (before and after
   the runs, custom and generic plans), and how the claim, the lease and host_urls grow with hosts
   and with URLs per host, next to bench-only rewrites (CLAIM_REWRITE, LEASE_REWRITE).
5. asyncpg (the crawler's driver) against psycopg 3 (async) on the same cycle: PgShared's own
   methods over a psycopg adapter (bench/crawler/pg_psycopg.py), text and binary formats, W=1 and
   W=4, 100,000 URLs, 20,000 pages, a fresh database each run (with the fixes of 3, so that
   host_urls' sequential scan does not hide the drivers), rounds rotating the order.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import queue
import random
import re
import statistics
import sys
import tempfile
import time
from importlib.metadata import version as version_of
from typing import Any

from bench.crawler.pg_fixes import ORIGIN_INDEX, fix
from bench.crawler.pg_report import exec_ms, render
from bench.crawler.pg_workload import (
    DELAY,
    K_HOSTS,
    LEASE_LIMIT,
    LEASE_SECONDS,
    host_url,
    postmaster_pid,
    server_cpu,
    worker_main,
)
from bench.results import machine_line, write_section
from crawler.state.shared import HostUpdate
from crawler.state.shared_pg import PgShared
from fixtures.postgres import Cluster, start

QUICK = os.environ.get("FANMILL_BENCH_QUICK") == "1"
W = 4
SEED = 16
LOAD_BATCH = 10_000
SAMPLE_EVERY = 3.0
if QUICK:
    HOSTS, PER_HOST, PAGES = 200, 100, 5_000
    DRV_HOSTS, DRV_PAGES, ROUNDS = 100, 3_000, 1
    CLAIM_HOSTS = (10_000, 100_000)
    LEASE_PER_HOST = (100, 1_000)
    LEASE_BACKGROUND = 50_000
else:
    HOSTS, PER_HOST, PAGES = 10_000, 100, 200_000
    DRV_HOSTS, DRV_PAGES, ROUNDS = 1_000, 20_000, 3
    CLAIM_HOSTS = (10_000, 100_000, 1_000_000)
    LEASE_PER_HOST = (100, 1_000, 10_000)
    LEASE_BACKGROUND = 1_000_000
TABLES = ("urls", "hosts", "contents", "workers")
DRIVERS = ("asyncpg", "psycopg", "psycopg-binary")
SLOW_MS = 100  # auto_explain logs the plan of any statement slower than this


# -- the cluster and small queries -----------------------------------------------------------

def make_cluster() -> Cluster:
    """A durable cluster (fast=False) with pg_stat_statements and auto_explain preloaded."""
    cluster = start(tempfile.mkdtemp(prefix="fanmill-pgscale-"), fast=False)
    try:
        cluster.psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements', 'auto_explain'")
        cluster.stop()
        cluster.start()
        cluster.psql(f"ALTER SYSTEM SET auto_explain.log_min_duration = {SLOW_MS}")
        cluster.psql("SELECT pg_reload_conf()")
    except BaseException:
        cluster.destroy()
        raise
    return cluster


async def connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(url)


async def wal_lsn(conn: Any) -> int:
    return int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


async def table_stats(conn: Any) -> dict[str, dict[str, int]]:
    rows = await conn.fetch(
        """SELECT relname, n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count,
                  n_tup_upd, n_tup_hot_upd, n_tup_ins
           FROM pg_stat_user_tables WHERE relname = ANY($1::text[])""", list(TABLES))
    return {r[0]: dict(r) for r in rows}


async def sizes(conn: Any) -> list[tuple[str, str, int]]:
    """(relation, what, bytes): each table's heap, TOAST and total, and each of its indexes."""
    out = []
    for table in TABLES:
        heap = await conn.fetchval("SELECT pg_relation_size($1::regclass)", table)
        total = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
        out.append((table, "heap", heap))
        for name, size in await conn.fetch(
                """SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x
                   JOIN pg_class i ON i.oid = x.indexrelid
                   WHERE x.indrelid = $1::regclass ORDER BY i.relname""", table):
            out.append((name, "index", size))
        out.append((table, "total (heap + TOAST + indexes)", total))
    return out


def stat_label(query: str) -> str:
    """A short name for one of PgShared's statements (as sent, or as pg_stat_statements shows it,
    constants replaced by $n)."""
    q = re.sub(r"\s+", " ", query).strip()
    rules = [
        ("FOR UPDATE SKIP LOCKED", "claim_hosts: UPDATE hosts … SKIP LOCKED"),
        ("FROM (SELECT url FROM urls WHERE origin IN", "lease_urls: UPDATE urls → fetching"),
        (re.compile(r"^UPDATE urls SET status = (\$\d+|'discovered') WHERE origin = ANY"),
         "claim/release: fetching → discovered"),
        ("INSERT INTO urls", "record (links): INSERT urls ON CONFLICT"),
        ("UPDATE urls SET depth", "record (links): move up depth"),
        ("INSERT INTO hosts", "record (links): INSERT hosts ON CONFLICT"),
        ("EXISTS (SELECT 1 FROM urls", "outstanding: sweep"),
        ("AND owner IS NULL", "record (links): mark hosts due"),
        ("FOR SHARE", "record: token check FOR SHARE"),
        ("SET status = t.s", "record: UPDATE urls results"),
        ("INSERT INTO contents", "record: INSERT contents"),
        ("pages = pages +", "record: UPDATE workers pages"),
        ("SET lease_until = $2, next_send", "renew: UPDATE hosts"),
        ("due_at = (SELECT min", "release: free hosts, due_at recomputed"),
        ("GREATEST(h.next_send, t.ns)", "release: UPDATE hosts politeness"),
        ("FROM contents WHERE seq", "contents_since"),
        ("SELECT url, depth, status FROM urls", "host_urls"),
        ("UPDATE workers SET seen = $1 WHERE id", "renew: UPDATE workers seen"),
        ("left_at = $1", "leave"),
        ("INSERT INTO workers", "join"),
        ("typeinfo_tree", "asyncpg: type introspection"),
        ("set_config", "driver: session settings"),
    ]
    for needle, label in rules:
        if needle.search(q) if isinstance(needle, re.Pattern) else needle in q:
            return label
    if q.upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
        return q.split()[0].upper().rstrip(";")
    return q[:60]


async def statements(conn: Any) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT query, calls, total_exec_time, rows, wal_bytes, shared_blks_hit, shared_blks_read,
                  shared_blks_dirtied
           FROM pg_stat_statements
           WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())""")
    merged: dict[str, dict[str, Any]] = {}
    for r in rows:
        q = r["query"]
        if any(s in q for s in ("pg_stat", "pg_current_wal", "pg_relation_size", "pg_index",
                                "pg_total_relation_size", "EXPLAIN")):
            continue  # the bench's own queries
        label = stat_label(q)
        m = merged.setdefault(label, dict(label=label, calls=0, ms=0.0, rows=0, wal=0, hit=0,
                                          read=0, dirtied=0))
        m["calls"] += r["calls"]
        m["ms"] += r["total_exec_time"]
        m["rows"] += r["rows"]
        m["wal"] += int(r["wal_bytes"])
        m["hit"] += r["shared_blks_hit"]
        m["read"] += r["shared_blks_read"]
        m["dirtied"] += r["shared_blks_dirtied"]
    return sorted(merged.values(), key=lambda m: -m["ms"])


# -- loading the frontier --------------------------------------------------------------------

async def load(url: str, hosts: int, per_host: int, seed: int) -> dict[str, Any]:
    """The frontier through PgShared.add_discovered, shuffled (a crawl finds a host's URLs over
    time, not all together), in batches of LOAD_BATCH; the schema is made by PgShared.open."""
    shared = await PgShared.open(url, "bench-loader")
    urls = [host_url(h, p) for h in range(hosts) for p in range(per_host)]
    random.Random(seed).shuffle(urls)
    t = time.perf_counter()
    cpu = time.process_time()
    for i in range(0, len(urls), LOAD_BATCH):
        await shared.add_discovered([(u, 0, None) for u in urls[i:i + LOAD_BATCH]])
    out = dict(urls=len(urls), seconds=time.perf_counter() - t, client_cpu=time.process_time() - cpu)
    await shared.close()
    return out


async def settle(conn: Any) -> None:
    """VACUUM ANALYZE the crawl tables and CHECKPOINT: every measured run starts alike."""
    for table in TABLES:
        await conn.execute(f"VACUUM (ANALYZE) {table}")
    await conn.execute("CHECKPOINT")


# -- running workers -------------------------------------------------------------------------

async def run_workers(cluster: Cluster, url: str, driver: str, workers: int, target: int,
                      hosts: int, per_host: int, sample: bool = False,
                      fixed: bool = False) -> dict[str, Any]:
    """W worker processes (spawned) on *url* until *target* pages are recorded; the figures.
    The server's CPU, WAL and statistics are read between go and the moment every worker is
    done with its cycles, before any of them releases, leaves or disconnects."""
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    go, finish, ready, out = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
    procs = []
    for i in range(workers):
        spec = dict(url=url, index=i, driver=driver, seed=SEED, hosts=hosts, per_host=per_host,
                    target=target, fixed=fixed)
        p = ctx.Process(target=worker_main, args=(spec, counter, go, finish, ready, out),
                        daemon=True)
        p.start()
        procs.append(p)
    results: list[dict[str, Any]] = []

    def said(what: str, timeout: float) -> bool:
        """One message from a worker: True when it is *what*; raise when a worker failed."""
        try:
            kind, _index = ready.get(timeout=timeout)
        except queue.Empty:
            if not all(p.is_alive() for p in procs):
                _drain(out, results)
                raise RuntimeError("a worker process died:\n" + "\n".join(
                    r.get("error", "") for r in results)) from None
            return False
        if kind == "failed":
            time.sleep(0.5)
            _drain(out, results)
            raise RuntimeError("a worker failed:\n" + "\n".join(
                r.get("error", "") for r in results))
        return kind == what

    try:
        got, deadline = 0, time.monotonic() + 120
        while got < workers:
            got += said("ready", 0.1)
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not connect in 120 s")
        conn = await connect(url)
        postmaster = postmaster_pid(cluster.data_dir)
        if sample:
            await conn.execute("SELECT pg_stat_statements_reset()")
        stats0, wal0, srv0 = await table_stats(conn), await wal_lsn(conn), server_cpu(postmaster)
        samples = []
        t0 = time.perf_counter()
        go.set()
        next_sample, done = 0.0, 0
        while done < workers:
            now = time.perf_counter() - t0
            if sample and now >= next_sample:
                next_sample += SAMPLE_EVERY
                samples.append(dict(t=now, pages=counter.value, stats=await table_stats(conn),
                                    wal=await wal_lsn(conn) - wal0,
                                    server_cpu=server_cpu(postmaster) - srv0))
            done += said("done", 0)
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - t0
        srv1, wal1 = server_cpu(postmaster), await wal_lsn(conn)
        stats1 = await table_stats(conn)
        stmts = await statements(conn) if sample else []
        await conn.close()
        finish.set()
        deadline = time.monotonic() + 120
        while len(results) < workers:
            _drain(out, results)
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not finish in 120 s")
            await asyncio.sleep(0.05)
    finally:
        go.set()
        finish.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError("a worker failed:\n" + "\n".join(errors))
    wall = max(r["wall"] for r in results)
    pages = sum(r["pages"] for r in results)
    return dict(driver=driver, workers=workers, wall=wall, elapsed=elapsed, pages=pages,
                cycles=sum(r["cycles"] for r in results), results=results,
                client_cpu=sum(r["cpu"] for r in results), gen=sum(r["gen"] for r in results),
                server_cpu=srv1 - srv0, wal=wal1 - wal0, stats0=stats0, stats1=stats1,
                samples=samples, statements=stmts)


def _drain(out: Any, results: list[dict[str, Any]]) -> None:
    while True:
        try:
            results.append(out.get_nowait())
        except queue.Empty:
            return


# -- plans -----------------------------------------------------------------------------------

def _literal(value: Any) -> str:
    """An SQL literal of a statement argument (for EXECUTE, which takes no bind parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        def element(v: Any) -> str:
            if v is None:
                return "NULL"
            text = str(v) if not isinstance(v, float) else repr(v)
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        value = "{" + ",".join(element(v) for v in value) + "}"
    return "'" + str(value).replace("'", "''") + "'"


class ExplainConn:
    """An asyncpg connection that, before each statement PgShared sends, runs EXPLAIN (ANALYZE,
    BUFFERS) of it with the same arguments inside a savepoint it rolls back, then the statement.

    Each statement is explained twice: with its arguments (the custom plan, as a prepared
    statement's first 5 executions get) and as a generic plan (PREPARE, plan_cache_mode =
    force_generic_plan, EXPLAIN EXECUTE with the arguments as literals): after 5 executions the
    server may keep a generic plan for a prepared statement, and the workers' connections show it
    does for the claim and the lease (pg_prepared_statements)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.plans: list[tuple[str, str]] = []  # (label, custom plan text)
        self.generic: list[tuple[str, str]] = []  # (label, generic plan text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def transaction(self) -> Any:
        return self._conn.transaction()

    async def _explain(self, sql: str, args: tuple[Any, ...]) -> None:
        label = stat_label(sql)
        for generic in (False, True):
            savepoint = self._conn.transaction()
            await savepoint.start()
            try:
                if generic:
                    await self._conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                    await self._conn.execute("PREPARE bench_generic AS " + sql)
                    try:
                        rows = await self._conn.fetch(
                            "EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_generic"
                            + ("(" + ", ".join(_literal(a) for a in args) + ")" if args else ""))
                    finally:
                        await self._conn.execute("DEALLOCATE bench_generic")
                else:
                    rows = await self._conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
            finally:
                await savepoint.rollback()
            (self.generic if generic else self.plans).append(
                (label, "\n".join(r[0] for r in rows)))

    async def execute(self, sql: str, *args: Any) -> Any:
        await self._explain(sql, args)
        return await self._conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        await self._explain(sql, args)
        return await self._conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        await self._explain(sql, args)
        return await self._conn.fetchrow(sql, *args)


async def explain_cycle(url: str, hosts: int, per_host: int,
                        fixed: bool = False) -> dict[str, list[tuple[str, str]]]:
    """The plans of one cycle's statements (claim 16, host_urls, lease 256, record, release) as a
    worker of its own; its changes are kept (16 hosts' worth of pages recorded)."""
    from bench.crawler.pg_workload import _Work

    shared = await PgShared.open(url, "bench-explain")
    if fixed:
        fix(shared)
    await shared.join(time.time())
    conn = shared._conn = ExplainConn(shared._conn)
    now = time.time()
    claimed = await shared.claim_hosts(K_HOSTS, now, LEASE_SECONDS, DELAY)
    await shared.host_urls([h.origin for h in claimed])
    leases = await shared.lease_urls([h.origin for h in claimed], LEASE_LIMIT, now)
    results, contents, _links = _Work(99, SEED, hosts, per_host).results(leases, time.time())
    tokens = {h.origin: h.token for h in claimed}
    await shared.record_results(results, tokens, contents, time.time())
    t = time.time()
    await shared.release([HostUpdate(h.origin, h.token, t) for h in claimed], t)
    await shared.leave(t)
    await shared.close()
    return dict(custom=conn.plans, generic=conn.generic)


def slow_plans(cluster: Cluster, offset: int) -> list[dict[str, Any]]:
    """auto_explain's entries (statements slower than SLOW_MS) in the server log after *offset*:
    duration, statement label and the plan the server really ran (generic or custom)."""
    with open(cluster.log_file, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        lines = f.read().splitlines()
    out: list[dict[str, Any]] = []
    entry: dict[str, Any] | None = None
    for line in lines:
        m = re.search(r"LOG:  duration: ([\d.]+) ms  plan:", line)
        if m:
            entry = dict(ms=float(m.group(1)), text=[])
            out.append(entry)
        elif entry is not None and (line.startswith(("\t", " ")) or not line[:4].isdigit()):
            entry["text"].append(line)
        else:
            entry = None
    for e in out:
        text = "\n".join(e.pop("text"))
        e["label"] = stat_label(text.split("Query Text:", 1)[-1])
        e["plan"] = text
    return out


# -- how the claim and the lease grow ---------------------------------------------------------

# Bench-only rewrites (the crawler's code is not changed): the same result, bounded work.
# The claim: the fair share only bites when fewer than (k + own leases) x live workers hosts have
# work, so count hosts with work up to that many (through hosts_due: a leased host always has a
# due time), count the caller's own leases through a partial index on owner, and pick the hosts by
# primary key (= ANY(ARRAY(...))) instead of a join the planner may run as a hash join over a
# sequential scan of every host.
CLAIM_REWRITE = """UPDATE hosts AS h SET owner = $1, token = h.token + 1, lease_until = $2,
    next_send = CASE WHEN h.owner IS NULL THEN h.next_send
        ELSE GREATEST(h.next_send, $3 + GREATEST(coalesce(h.crawl_delay, 0), $5)) END
WHERE h.origin = ANY(ARRAY(
    SELECT origin FROM hosts WHERE due_at <= $3 AND (owner IS NULL OR lease_until < $3)
    ORDER BY due_at LIMIT GREATEST(0, LEAST($4, (
        SELECT ceil((SELECT count(*) FROM (
                   SELECT 1 FROM hosts WHERE due_at IS NOT NULL
                   AND (due_at <= $3 AND (owner IS NULL OR lease_until < $3)
                        OR owner IS NOT NULL AND lease_until >= $3)
                   LIMIT ($4 + mine.n) * live.n) AS with_work)::float8 / live.n)::int - mine.n
        FROM (SELECT GREATEST(1, count(*)) AS n FROM workers
              WHERE left_at IS NULL AND seen >= $3 - $6) AS live,
             (SELECT count(*) AS n FROM hosts WHERE owner = $1 AND lease_until >= $3) AS mine)))
    FOR UPDATE SKIP LOCKED))
RETURNING h.origin, h.token, h.lease_until, h.next_send, h.crawl_delay,
          h.robots_status, h.robots_body, h.robots_at, h.robots_reason"""
CLAIM_REWRITE_INDEX = "CREATE INDEX hosts_owner ON hosts (owner) WHERE owner IS NOT NULL"
# The lease: per owned host, its smallest depths through urls_origin_due (origin, depth), at most
# `limit` each (LATERAL), then the smallest overall: work bounded by hosts x limit, not by every
# due URL of every owned host.
LEASE_REWRITE = """UPDATE urls SET status = 'fetching'
FROM (SELECT c.url FROM hosts AS h CROSS JOIN LATERAL (
          SELECT url, depth FROM urls WHERE urls.origin = h.origin
          AND (status = 'discovered' OR (status = 'retryable' AND next_try <= $3))
          ORDER BY depth LIMIT $4) AS c
      WHERE h.origin = ANY($1::text[]) AND h.owner = $2 AND h.lease_until >= $3
      ORDER BY c.depth LIMIT $4) AS due
WHERE urls.url = due.url
RETURNING urls.url, urls.depth, urls.referrer, urls.attempts"""
# The one bench-only change the second run makes (the crawler's code is not changed): host_urls
# selects every URL of the claimed hosts by origin, and urls has no index on origin for URLs
# already fetched (urls_origin_due holds only the waiting and in-flight ones).
RUNS, STEADY = 25, 10  # executions of a statement; the median is taken over the last STEADY


class RecordingConn:
    """An asyncpg connection that keeps the (sql, args) of every statement sent through it."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.sent.append((sql, args))
        return await self._conn.fetch(sql, *args)

    async def execute(self, sql: str, *args: Any) -> Any:
        self.sent.append((sql, args))
        return await self._conn.execute(sql, *args)


async def _timed_statement(conn: Any, sql: str, args: tuple[Any, ...]) -> tuple[float, list[Any]]:
    async with conn.transaction():
        t = time.perf_counter()
        rows = await conn.fetch(sql, *args)
        return time.perf_counter() - t, rows


async def _explained(conn: Any, sql: str, args: tuple[Any, ...]) -> str:
    tr = conn.transaction()
    await tr.start()
    try:
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
    finally:
        await tr.rollback()
    return "\n".join(r[0] for r in rows)


async def claim_scaling(cluster: Cluster, counts: tuple[int, ...]) -> list[dict[str, Any]]:
    """The claim statement (k=16) against N due, free hosts and 4 live workers: shared_pg.py's
    and the rewrite, each executed RUNS times on its own prepared statement (a release, not
    timed, between), median of the last STEADY; EXPLAIN ANALYZE of both at each N."""
    out = []
    for n in counts:
        name = f"claim_{n}"
        url = cluster.create_database(name)
        shared = await PgShared.open(url, "bench-claim")
        conn = await connect(url)
        await conn.execute(
            """INSERT INTO hosts (origin, due_at) SELECT 'http://c' || g || '.example', 0
               FROM generate_series(1, $1) AS g""", n)
        await conn.execute(
            """INSERT INTO workers (id, started, seen)
               SELECT 'other-' || g, $1::float8, $1::float8 + 3600
               FROM generate_series(1, 3) AS g""", time.time())
        await settle(conn)
        await shared.join(time.time())
        recording = shared._conn = RecordingConn(shared._conn)
        claimed = await shared.claim_hosts(K_HOSTS, time.time(), LEASE_SECONDS, DELAY)
        shared._conn = recording._conn
        await shared.release([HostUpdate(h.origin, h.token, time.time()) for h in claimed],
                             time.time())
        claim_sql = recording.sent[0][0]
        row: dict[str, Any] = dict(n=n)
        for which, sql in (("shared_pg", claim_sql), ("rewrite", CLAIM_REWRITE)):
            if which == "rewrite":
                await conn.execute(CLAIM_REWRITE_INDEX)
                await conn.execute("ANALYZE hosts")
            times, got = [], set()
            for _ in range(RUNS):
                now = time.time()
                args = ("bench-claim", now + LEASE_SECONDS, now, K_HOSTS, DELAY, LEASE_SECONDS)
                took, rows = await _timed_statement(conn, sql, args)
                times.append(took)
                got.add(len(rows))
                await shared.release([HostUpdate(r[0], r[1], now) for r in rows], now)
            now = time.time()
            plan = await _explained(conn, sql, ("bench-claim", now + LEASE_SECONDS, now, K_HOSTS,
                                                DELAY, LEASE_SECONDS))
            row[which] = dict(median_ms=statistics.median(times[-STEADY:]) * 1000,
                              first_ms=times[0] * 1000, hosts_claimed=sorted(got),
                              exec_ms=exec_ms(plan), plan=plan)
        out.append(row)
        await shared.close()
        await conn.close()
        cluster.drop_database(name)
    return out


async def lease_scaling(cluster: Cluster, per_host: tuple[int, ...]) -> list[dict[str, Any]]:
    """The lease statement (16 owned hosts, 256 URLs) against M due URLs per owned host, in a
    table that also holds LEASE_BACKGROUND fetched URLs of other hosts (and host_urls of the 16
    hosts, without and with ORIGIN_INDEX):
    shared_pg.py's and the rewrite, RUNS executions each (the leased URLs put back, not timed),
    median of the last STEADY; EXPLAIN ANALYZE of both."""
    out = []
    for m in per_host:
        name = f"lease_{m}"
        url = cluster.create_database(name)
        shared = await PgShared.open(url, "bench-lease")
        conn = await connect(url)
        await conn.execute(
            """INSERT INTO urls (url, origin, depth, status)
               SELECT 'http://l' || h || '.example/p' || p, 'http://l' || h || '.example', p % 5,
                      'discovered'
               FROM generate_series(0, 15) AS h, generate_series(0, $1 - 1) AS p""", m)
        await conn.execute("""INSERT INTO hosts (origin, due_at)
                              SELECT 'http://l' || h || '.example', 0
                              FROM generate_series(0, 15) AS h""")
        # URLs already fetched on other hosts: a big table, as in a crawl under way
        await conn.execute(
            """INSERT INTO urls (url, origin, depth, status, record)
               SELECT 'http://f' || g / 100 || '.example/p' || g % 100,
                      'http://f' || g / 100 || '.example', 1, 'fetched', repeat('x', 400)
               FROM generate_series(0, $1 - 1) AS g""", LEASE_BACKGROUND)
        await settle(conn)
        await shared.join(time.time())
        claimed = await shared.claim_hosts(K_HOSTS, time.time(), 3600, DELAY)
        origins = [h.origin for h in claimed]
        recording = shared._conn = RecordingConn(shared._conn)
        await shared.lease_urls(origins, LEASE_LIMIT, time.time())
        shared._conn = recording._conn
        lease_sql = recording.sent[0][0]
        await conn.execute("UPDATE urls SET status = 'discovered' WHERE status = 'fetching'")
        row: dict[str, Any] = dict(m=m)
        for which, sql in (("shared_pg", lease_sql), ("rewrite", LEASE_REWRITE)):
            times, depths = [], set()
            for _ in range(RUNS):
                args = (origins, "bench-lease", time.time(), LEASE_LIMIT)
                took, rows = await _timed_statement(conn, sql, args)
                times.append(took)
                assert len(rows) == LEASE_LIMIT, len(rows)
                depths.add(max(r[1] for r in rows))
                await conn.execute(
                    "UPDATE urls SET status = 'discovered' WHERE status = 'fetching'")
            await conn.execute("VACUUM urls")
            plan = await _explained(conn, sql, (origins, "bench-lease", time.time(), LEASE_LIMIT))
            row[which] = dict(median_ms=statistics.median(times[-STEADY:]) * 1000,
                              first_ms=times[0] * 1000, max_depth=sorted(depths),
                              exec_ms=exec_ms(plan), plan=plan)
        # host_urls of the 16 hosts (as the engine calls it after a claim), without and with an
        # index on urls (origin)
        for which in ("host_urls", "host_urls_index"):
            if which == "host_urls_index":
                await conn.execute(ORIGIN_INDEX)
                await conn.execute("ANALYZE urls")
            times = []
            for _ in range(RUNS):
                t = time.perf_counter()
                got = await shared.host_urls(origins)
                times.append(time.perf_counter() - t)
            assert len(got) == 16 * m, len(got)
            row[which] = dict(median_ms=statistics.median(times[-STEADY:]) * 1000,
                              first_ms=times[0] * 1000)
        out.append(row)
        await shared.close()
        await conn.close()
        cluster.drop_database(name)
    return out


# -- asyncpg against psycopg -----------------------------------------------------------------

async def drivers(cluster: Cluster) -> list[dict[str, Any]]:
    """Each (driver, W) on a fresh database of DRV_HOSTS x PER_HOST URLs, DRV_PAGES pages;
    ROUNDS rounds, the order rotated each round."""
    configs = [(d, w) for w in (1, W) for d in DRIVERS]
    runs = []
    for rnd in range(ROUNDS):
        order = configs[rnd % len(configs):] + configs[:rnd % len(configs)]
        if rnd % 2:
            order.reverse()
        for driver, workers in order:
            name = f"drv_{rnd}_{driver.replace('-', '_')}_{workers}"
            url = cluster.create_database(name)
            await load(url, DRV_HOSTS, PER_HOST, SEED)
            conn = await connect(url)
            await conn.execute(ORIGIN_INDEX)
            await settle(conn)
            await conn.close()
            run = await run_workers(cluster, url, driver, workers, DRV_PAGES, DRV_HOSTS, PER_HOST,
                                    fixed=True)
            run["round"] = rnd
            runs.append(run)
            print(f"  round {rnd} {driver} W={workers}: {run['pages'] / run['wall']:,.0f} pages/s, "
                  f"client {run['client_cpu'] / run['pages'] * 1e6:,.0f} µs/page, server "
                  f"{run['server_cpu'] / run['pages'] * 1e6:,.0f} µs/page", file=sys.stderr)
            cluster.drop_database(name)
    return runs


# -- the whole run ---------------------------------------------------------------------------

WORK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".work",
                    "crawler-pg-scale")


def _log(msg: str) -> None:
    print(f"[pg_scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def scale_run(cluster: Cluster, name: str, fixed: bool) -> dict[str, Any]:
    """Load the frontier into a fresh database, W workers until PAGES pages, the figures;
    *fixed*: with bench/crawler/pg_fixes.py's index and link insertion."""
    url = cluster.create_database(name)
    cluster.psql("CREATE EXTENSION pg_stat_statements", name)
    postmaster = postmaster_pid(cluster.data_dir)
    conn = await connect(url)
    _log(f"{name}: loading {HOSTS * PER_HOST:,} URLs over {HOSTS:,} hosts")
    wal0, srv0 = await wal_lsn(conn), server_cpu(postmaster)
    part: dict[str, Any] = dict(fixed=fixed, load=await load(url, HOSTS, PER_HOST, SEED))
    await asyncio.sleep(0.5)  # the loader's backend has exited: its CPU is in the postmaster's
    part["load"].update(wal=await wal_lsn(conn) - wal0, server_cpu=server_cpu(postmaster) - srv0)
    if fixed:
        t = time.perf_counter()
        await conn.execute(ORIGIN_INDEX)
        part["index_seconds"] = time.perf_counter() - t
    _log(f"{name}: loaded in {part['load']['seconds']:.1f} s; VACUUM ANALYZE, CHECKPOINT")
    await settle(conn)
    part["sizes0"] = await sizes(conn)
    part["plans0"] = await explain_cycle(url, HOSTS, PER_HOST, fixed)
    await settle(conn)
    await conn.close()
    _log(f"{name}: {W} workers until {PAGES:,} pages")
    part["loadavg_run_start"] = open("/proc/loadavg").read().split()[:3]
    log_at = cluster.log_file.stat().st_size
    run = await run_workers(cluster, url, "asyncpg", W, PAGES, HOSTS, PER_HOST, sample=True,
                            fixed=fixed)
    part["run"] = run
    part["loadavg_run_end"] = open("/proc/loadavg").read().split()[:3]
    part["slow"] = slow_plans(cluster, log_at)
    _log(f"{name}: {run['pages']:,} pages in {run['wall']:.1f} s: "
         f"{run['pages'] / run['wall']:,.0f} pages/s")
    conn = await connect(url)
    part["sizes1"] = await sizes(conn)
    part["status"] = {r[0]: r[1] for r in await conn.fetch(
        "SELECT status, count(*) FROM urls GROUP BY status")}
    part["hosts_left"] = await conn.fetchval(
        "SELECT count(*) FROM hosts WHERE due_at IS NOT NULL")
    part["record_bytes"] = float(await conn.fetchval(
        "SELECT avg(octet_length(record)) FROM urls WHERE status = 'fetched'"))
    await conn.close()
    part["plans1"] = await explain_cycle(url, HOSTS, PER_HOST, fixed)
    cluster.drop_database(name)
    return part


async def measure(cluster: Cluster) -> dict[str, Any]:
    """Every figure of the section, as one JSON-able dict."""
    fig: dict[str, Any] = dict(quick=QUICK, hosts=HOSTS, per_host=PER_HOST, target=PAGES, w=W,
                               loadavg=open("/proc/loadavg").read().split()[:3])
    fig["settings"] = {k: cluster.psql(f"SHOW {k}") for k in (
        "server_version", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers",
        "max_wal_size", "checkpoint_timeout", "autovacuum_naptime", "wal_compression",
        "shared_preload_libraries")}
    fig["versions"] = {p: version_of(p) for p in ("asyncpg", "psycopg", "uvloop")}
    fig["drv"] = dict(hosts=DRV_HOSTS, per_host=PER_HOST, pages=DRV_PAGES, rounds=ROUNDS)
    fig["origin_index"] = ORIGIN_INDEX
    fig["runs"] = {"as_is": await scale_run(cluster, "scale", False),
                   "fixed": await scale_run(cluster, "scale_fixed", True)}
    _log("claim and lease scaling")
    fig["claim_scaling"] = await claim_scaling(cluster, CLAIM_HOSTS)
    fig["lease_scaling"] = await lease_scaling(cluster, LEASE_PER_HOST)
    _log(f"drivers: {ROUNDS} round(s)")
    fig["drivers"] = await drivers(cluster)
    return fig


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
    markdown = render(fig)
    write_section("crawler-pg-scale", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
