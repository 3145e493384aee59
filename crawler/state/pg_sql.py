"""The PostgreSQL statements of the shared crawl state (shared_pg.py): the schema, and the claim,
share and lease statements whose plans bench/crawler/pg_scale.py measured, and the pure helpers
that shape their arguments."""

from __future__ import annotations

from typing import Any

from crawler.state.shared import HostUpdate

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS fanmill_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS urls (
    url TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    depth INTEGER NOT NULL,
    referrer TEXT,
    status TEXT NOT NULL CHECK (status IN ('discovered', 'fetching', 'fetched', 'failed', 'retryable')),
    next_try DOUBLE PRECISION,
    attempts INTEGER NOT NULL DEFAULT 0,
    record TEXT
) WITH (autovacuum_vacuum_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.05);
CREATE INDEX IF NOT EXISTS urls_origin_due ON urls (origin, depth)
    WHERE status IN ('discovered', 'retryable', 'fetching');
CREATE TABLE IF NOT EXISTS hosts (
    origin TEXT PRIMARY KEY,
    owner TEXT,
    token BIGINT NOT NULL DEFAULT 0,
    lease_until DOUBLE PRECISION,
    due_at DOUBLE PRECISION,
    next_send DOUBLE PRECISION NOT NULL DEFAULT 0,
    crawl_delay DOUBLE PRECISION,
    robots_status INTEGER, robots_body BYTEA, robots_at DOUBLE PRECISION, robots_reason TEXT
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02);
CREATE INDEX IF NOT EXISTS hosts_due ON hosts (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS hosts_owner ON hosts (owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, started DOUBLE PRECISION NOT NULL, seen DOUBLE PRECISION NOT NULL,
    pages BIGINT NOT NULL DEFAULT 0, errors BIGINT NOT NULL DEFAULT 0, left_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS contents (
    seq BIGSERIAL PRIMARY KEY, url TEXT NOT NULL, content_hash TEXT, simhash TEXT
);
"""
DUE_OF = """(SELECT min(CASE status WHEN 'retryable' THEN next_try ELSE 0 END) FROM urls
    WHERE urls.origin = hosts.origin AND status IN ('discovered', 'retryable', 'fetching'))"""
# The claim. Hosts are picked by primary key from a list (`= ANY(ARRAY(...))`), and the fair
# share stops counting hosts with work once it is certain: claiming costs ~0.7 ms whether the
# crawl has 10 thousand hosts or a million (joining back over every host cost 4 ms at 10k and
# 252 ms at 1M; bench/crawler/pg_scale.py). A worker takes up to its share of the hosts with
# work: free and leased ones over the live workers, rounded up, less what it owns.
CLAIM = """UPDATE hosts AS h SET owner = $1, token = h.token + 1, lease_until = $2,
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
SHARE = """SELECT ceil((SELECT count(*) FROM (
        SELECT 1 FROM hosts WHERE due_at IS NOT NULL
        AND (due_at <= $1::float8 AND (owner IS NULL OR lease_until < $1::float8)
             OR owner IS NOT NULL AND lease_until >= $1::float8)
        LIMIT ($3::int + 64) * live.n) AS with_work)::float8 / live.n)::int
    FROM (SELECT GREATEST(1, count(*)) AS n FROM workers
          WHERE left_at IS NULL AND seen >= $1::float8 - $2::float8) AS live"""
# The lease: per owned host its smallest depths (LATERAL over urls_origin_due), at most a share
# of `limit` each (so every owned host gets work, not the first in depth order all of it), then
# the smallest overall: the work is bounded by hosts x share, not by every due URL of every owned
# host (93 ms at 10,000 URLs per host before, ~6.5 ms after).
LEASE = """UPDATE urls SET status = 'fetching'
FROM (SELECT c.url FROM hosts AS h CROSS JOIN LATERAL (
          SELECT url, depth FROM urls WHERE urls.origin = h.origin
          AND (status = 'discovered' OR (status = 'retryable' AND next_try <= $3))
          ORDER BY depth LIMIT $5) AS c
      WHERE h.origin = ANY($1::text[]) AND h.owner = $2 AND h.lease_until >= $3
      ORDER BY c.depth LIMIT $4) AS due
WHERE urls.url = due.url
RETURNING urls.url, urls.depth, urls.referrer, urls.attempts"""

# new URLs; those flagged ($5) of hosts the worker owns ($6) go in leased (shared_pg._add)
ADD_URLS = """INSERT INTO urls (url, origin, depth, referrer, status)
    SELECT u, o, d, r, CASE WHEN l AND o IN (
        SELECT origin FROM hosts WHERE owner = $6 AND lease_until >= $7)
        THEN 'fetching' ELSE 'discovered' END
    FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::bool[]) AS t(u, o, d, r, l)
    ON CONFLICT (url) DO NOTHING
    RETURNING origin, url, depth, referrer, status"""


def best_depths(found: list[tuple[str, int, str | None]]) -> list[tuple[str, int, str | None]]:
    """One row per URL (its smallest depth), sorted: an upsert may touch a row once, and sorted
    batches take their locks in one order."""
    best: dict[str, tuple[str, int, str | None]] = {}
    for row in found:
        have = best.get(row[0])
        if have is None or row[1] < have[1]:
            best[row[0]] = row
    return [best[u] for u in sorted(best)]


def update_arrays(updates: list[HostUpdate]) -> tuple[list[Any], ...]:
    """The hosts' (origin, token, next send, crawl delay) as four arrays in origin order (one
    order of row locks for every batch)."""
    ordered = sorted(updates, key=lambda u: u.origin)
    return ([u.origin for u in ordered], [u.token for u in ordered],
            [u.next_send for u in ordered], [u.crawl_delay for u in ordered])


def safe_url(url: str) -> str:
    """The URL without its password (it goes into error messages)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
    return url
