"""The cluster of bench/crawler/pg_scale.py and its small queries; loading the frontier."""

from __future__ import annotations

import random
import re
import tempfile
import time
from typing import Any

from bench.crawler.pg_scale_settings import LOAD_BATCH, SLOW_MS, TABLES
from bench.crawler.pg_synthetic_pages import host_url
from crawler.state.shared_pg import PgShared
from fixtures.postgres import Cluster, start


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
    """An asyncpg connection to *url*."""
    import asyncpg

    return await asyncpg.connect(url)


async def wal_lsn(conn: Any) -> int:
    """The server's current WAL position, in bytes."""
    return int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


async def table_stats(conn: Any) -> dict[str, dict[str, int]]:
    """pg_stat_user_tables' tuple and autovacuum counts of the crawl tables."""
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
        ("CROSS JOIN LATERAL", "lease_urls: UPDATE urls → fetching"),
        ("SELECT ceil((SELECT count(*) FROM (", "share: fair-share count"),
        (re.compile(r"^UPDATE urls SET status = (\$\d+|'discovered') WHERE origin = ANY"),
         "claim/release: fetching → discovered"),
        ("INSERT INTO urls", "record (links): INSERT urls ON CONFLICT"),
        ("UPDATE urls SET depth", "record (links): move up depth"),
        ("INSERT INTO hosts", "record (links): INSERT hosts ON CONFLICT"),
        ("EXISTS (SELECT 1 FROM urls", "outstanding: sweep"),
        ("SELECT count(*) FROM urls WHERE status IN", "outstanding: counts"),
        ("AND owner IS NULL", "record (links): mark hosts due"),
        ("FOR SHARE", "record: token check FOR SHARE"),
        ("WHERE url = ANY($1::text[]) AND", "record: lease links of owned hosts"),
        ("SET status = t.s", "record: UPDATE urls results"),
        ("INSERT INTO contents", "record: INSERT contents"),
        ("pages = pages +", "record: UPDATE workers pages"),
        ("SET lease_until = $2, next_send", "renew: UPDATE hosts"),
        ("due_at = (SELECT min", "release: free hosts, due_at recomputed"),
        ("GREATEST(h.next_send, t.ns)", "release: UPDATE hosts politeness"),
        ("FROM contents WHERE seq", "contents_since"),
        ("redirect_to", "redirects"),
        ("UPDATE workers SET seen = $1 WHERE id", "renew: UPDATE workers seen"),
        ("left_at = $1", "leave"),
        ("INSERT INTO workers", "join"),
        ("to_regclass", "open: schema check"),
        ("pg_catalog.pg_class", "open: schema check"),
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
    """pg_stat_statements of this database by statement label, dearest first (the bench's own queries left out)."""
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
