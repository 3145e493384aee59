"""The statements of the shared protocol on SQLite (shared_sqlite.py), as pg_sql.py holds
PostgreSQL's, the encoding of a group commit's rows for them (done before the writer lock is
taken), and the two calls made of plain statements (a host's robots.txt, `crawl status`)."""

from __future__ import annotations

import sqlite3
from typing import Any

from crawler.state.shared import HostUpdate, Result
from crawler.state.sqlite import ORIGIN_SQL, outcome_rows, rows_json

# new URLs (or a smaller depth for a waiting one); rows flagged (4th element 1) of hosts the
# worker :me owns go in leased at once
INSERT_URLS = f"""INSERT INTO urls (url, depth, referrer, status, origin)
    SELECT u, d, r, CASE WHEN l AND o IN (SELECT origin FROM hosts WHERE owner = :me
                                          AND lease_until >= :now)
                    THEN 'fetching' ELSE 'discovered' END, o FROM (
        SELECT value ->> 0 AS u, value ->> 1 AS d, value ->> 2 AS r, value ->> 3 AS l,
               {ORIGIN_SQL.format(url="(value ->> 0)")} AS o FROM json_each(:rows) ORDER BY key)
    WHERE true
    ON CONFLICT (url) DO UPDATE SET depth = excluded.depth, referrer = excluded.referrer
    WHERE excluded.depth < urls.depth AND urls.status IN ('discovered', 'retryable')
    RETURNING origin, url, depth, referrer, status"""
# a host with a new URL is due now
HOST_DUE = """INSERT INTO hosts (origin, due_at) VALUES (?, 0)
    ON CONFLICT (origin) DO UPDATE SET due_at = 0 WHERE hosts.due_at IS NULL OR hosts.due_at > 0"""
DUE_OF = """(SELECT min(CASE status WHEN 'retryable' THEN next_try ELSE 0 END) FROM urls
    WHERE urls.origin = hosts.origin AND status IN ('discovered', 'retryable', 'fetching'))"""

# a claimer takes hosts up to its share of the hosts with work (free and leased ones over the live
# workers, rounded up), so workers that start together split the hosts, not the first takes all
FAIR_SHARE = """SELECT (free + held + live - 1) / live - mine FROM
    (SELECT count(*) AS free FROM hosts WHERE due_at <= :now
     AND (owner IS NULL OR lease_until < :now)),
    (SELECT count(*) AS held, coalesce(sum(owner = :me), 0) AS mine FROM hosts
     WHERE owner IS NOT NULL AND lease_until >= :now),
    (SELECT max(1, count(*)) AS live FROM workers WHERE left_at IS NULL AND seen >= :since)"""

SHARE = """SELECT (free + held + live - 1) / live FROM
    (SELECT count(*) AS free FROM hosts WHERE due_at <= :now
     AND (owner IS NULL OR lease_until < :now)),
    (SELECT count(*) AS held FROM hosts WHERE owner IS NOT NULL AND lease_until >= :now),
    (SELECT max(1, count(*)) AS live FROM workers WHERE left_at IS NULL AND seen >= :since)"""


def store_robots(conn: sqlite3.Connection, u: HostUpdate) -> None:
    """Keep a host's robots.txt answer in its row."""
    status, body, at, reason = u.robots
    conn.execute(
        """UPDATE hosts SET robots_status = ?, robots_body = ?, robots_at = ?, robots_reason = ?
           WHERE origin = ?""", (status, body, at, reason, u.origin))


def status_report(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
    """`crawl status`: URLs per status, hosts and hosts leased, every worker seen."""
    counts = {status: n for status, n in conn.execute(
        "SELECT status, count(*) FROM urls GROUP BY status")}
    hosts, leased = conn.execute(
        "SELECT count(*), sum(owner IS NOT NULL AND lease_until >= ?) FROM hosts", (now,)).fetchone()
    workers = [dict(zip(("id", "started", "seen", "pages", "errors", "left_at"), row, strict=True))
               for row in conn.execute(
                   "SELECT id, started, seen, pages, errors, left_at FROM workers ORDER BY started")]
    return {"urls": counts, "hosts": hosts, "hosts_leased": leased or 0, "workers": workers}


def links_json(found: list[tuple[str, int, str | None]], lease: set[str]) -> str | None:
    """INSERT_URLS's rows: (url, depth, referrer, 1 to lease at once), or None for none."""
    if not found:
        return None
    return rows_json((url, depth, referrer, 1 if url in lease else 0)
                     for url, depth, referrer in found)


class Batch:
    """A group commit's rows, encoded for SQLite's json_each: the links, the outcomes (records
    as JSON text inside the JSON array) and the digests of the URLs recorded."""

    def __init__(self, results: list[Result], contents: list[tuple[str, str | None, str | None]],
                 lease: set[str]) -> None:
        self.results = results
        self.links = links_json([link for r in results for link in r[3]], lease)
        self.outcomes = outcome_rows(results)
        self.outcomes_json = rows_json(self.outcomes.values()) if self.outcomes else None
        kept = [c for c in contents if c[0] in self.outcomes]
        self.contents_json = rows_json(kept) if kept else None
