"""The shared protocol (shared.py) on the crawl's SQLite file: workers of one machine.

Every write is one `BEGIN IMMEDIATE` transaction: SQLite has one writer at a time, so a claim and
the token checks of a record see no concurrent change (what FOR UPDATE SKIP LOCKED buys on
PostgreSQL). WAL lets readers run beside the writer; a batch of results is one group commit.

Each call runs whole, lock to commit, as one function on the connection's own thread: awaited
statement by statement (aiosqlite), every statement waited for a turn of the worker's busy event
loop, so a commit of ten results held the writer lock for 400 ms and the other worker waited that
long (timers around the lock in a scratch run; bench: crawler-workers has the pages/s before and
after).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from cache.storage import open_store, transaction
from crawler.errors import StateError
from crawler.state.shared import (
    HostLease,
    HostUpdate,
    Outstanding,
    Recorded,
    Result,
    origin_key,
    per_host_share,
    tally,
)
from crawler.state.sqlite import (
    MIGRATIONS,
    RECORD_ROWS,
    REDIRECTS,
    Lease,
    rows_json,
)
from crawler.state.sqlite_sql import (
    DUE_OF,
    FAIR_SHARE,
    HOST_DUE,
    INSERT_URLS,
    SHARE,
    Batch,
    links_json,
    status_report,
    store_robots,
)

T = TypeVar("T")

COMPOUND_MAX = 200  # SELECTs joined by UNION ALL in one statement (SQLite allows 500)


class SqliteShared:
    """Shared crawl state in one SQLite file; open with `await SqliteShared.open(path, worker)`."""

    def __init__(self, conn: sqlite3.Connection, worker: str, writer_fd: int) -> None:
        self._conn = conn
        self.worker = worker
        self._writer_fd = writer_fd
        # one thread owns the connection: calls queue there in order, as on one connection
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="fanmill-state")

    @classmethod
    async def open(cls, path: str | os.PathLike[str], worker: str) -> SqliteShared:
        """Open or create the state file (WAL, migrated), as worker *worker*."""
        path = os.fspath(path)
        try:
            fd = os.open(path + ".writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot create {path}.writer: {exc.strerror}") from exc

        def opened() -> sqlite3.Connection:
            # under the writer lock: workers opening a new file at once raced to switch it to
            # WAL, and SQLite answers that race "database is locked" at once, without waiting
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                # several workers write: wait for the lock as long as a big commit may take
                return open_store(path, migrations=MIGRATIONS, busy_timeout_ms=60_000)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

        try:
            conn = await asyncio.to_thread(opened)
        except BaseException:
            os.close(fd)
            raise
        return cls(conn, worker, fd)

    async def close(self) -> None:
        """Close the file."""
        try:
            await self._call(lambda conn: conn.close())
        finally:
            self._thread.shutdown()
            os.close(self._writer_fd)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run *fn(conn)* on the connection's thread. A cancelled caller (Ctrl-C) stops waiting,
        but *fn* runs to its end there: a transaction commits or rolls back whole, never half."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, self._conn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run *fn(conn)* as one write transaction, workers taking turns on a kernel lock (flock
        on STATE.writer).

        SQLite's own wait for its write lock is a sleep loop (1, 2, 5, 10 ... 100 ms between
        tries), so a worker waiting for another's commit slept for tens of ms after it was free;
        a blocked flock wakes as the holder lets go, and the kernel frees it if the holder dies.
        """
        def locked(conn: sqlite3.Connection) -> T:
            fcntl.flock(self._writer_fd, fcntl.LOCK_EX)
            try:
                with transaction(conn):
                    return fn(conn)
            finally:
                fcntl.flock(self._writer_fd, fcntl.LOCK_UN)

        return await self._call(locked)

    async def reset(self) -> None:
        """Free every host and URL lease (no worker is alive: the caller holds the crawl's lock),
        and rebuild each host's due time from its URLs (a single-process run does not keep it).
        Every token moves on: a host claimed with token 1 is one no process ever crawled before
        (its owner queues new URLs at once), and a single-process run crawls without claims."""
        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE urls SET status = 'discovered', lease_until = NULL WHERE status = 'fetching'")
            conn.execute("INSERT OR IGNORE INTO hosts (origin) SELECT DISTINCT origin FROM urls")
            conn.execute(f"UPDATE hosts SET owner = NULL, lease_until = NULL, due_at = {DUE_OF}, "
                         "token = token + 1")

        await self._write(work)

    async def join(self, now: float) -> None:
        """Register this worker."""
        await self._write(lambda conn: conn.execute(
            "INSERT INTO workers (id, started, seen) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET seen = excluded.seen, left_at = NULL",
            (self.worker, now, now)))

    def _add(self, conn: sqlite3.Connection, found: list[tuple[str, int, str | None]],
             lease: set[str] = frozenset(), now: float = 0.0) -> list[Lease]:
        """Insert URLs, those in *lease* of hosts this worker owns leased at once (written once
        here and once with their result, not also by a lease UPDATE); return those leases.
        Only the hosts of URLs really added (or moved up) become due: a link to a known URL
        would make a drained host due again, for a claim that leases nothing."""
        return self._insert(conn, links_json(found, lease), now)

    def _insert(self, conn: sqlite3.Connection, rows: str | None, now: float) -> list[Lease]:
        """_add of rows already encoded (sqlite_sql.links_json)."""
        if rows is None:
            return []
        # one statement over a JSON array (see sqlite._ADD_ROWS); RETURNING gives the rows
        # inserted or moved up, so their hosts
        due, leased = set(), []
        for origin, url, depth, referrer, status in conn.execute(
                INSERT_URLS, {"me": self.worker, "now": now, "rows": rows}):
            due.add((origin,))
            if status == "fetching":
                leased.append(Lease(url, depth, referrer, 0))
        if due:
            conn.executemany(HOST_DUE, sorted(due))
        return leased

    async def add_discovered(self, found: list[tuple[str, int, str | None]]) -> None:
        """Add (url, depth, referrer) rows."""
        found = list(found)
        await self._write(lambda conn: self._add(conn, found))

    async def claim_hosts(self, k: int, now: float, lease: float, delay: float) -> list[HostLease]:
        """Lease up to *k* due hosts that are free or whose lease expired."""
        if k <= 0:
            return []

        def work(conn: sqlite3.Connection) -> list[Any]:
            share = conn.execute(
                FAIR_SHARE, {"now": now, "me": self.worker, "since": now - lease}).fetchone()[0]
            origins = [row[0] for row in conn.execute(
                """SELECT origin FROM hosts WHERE due_at <= ? AND (owner IS NULL OR lease_until < ?)
                   ORDER BY due_at LIMIT ?""", (now, now, max(0, min(k, share))))]
            if not origins:
                return []
            marks = ",".join("?" * len(origins))
            # a taken-over host counts as sent to just now: its dead owner's last send is unknown
            conn.execute(
                f"""UPDATE hosts SET next_send = max(next_send, ? + max(coalesce(crawl_delay, 0), ?))
                    WHERE origin IN ({marks}) AND owner IS NOT NULL""", (now, delay, *origins))
            conn.execute(
                f"""UPDATE hosts SET owner = ?, token = token + 1, lease_until = ?
                    WHERE origin IN ({marks})""", (self.worker, now + lease, *origins))
            conn.execute(
                f"""UPDATE urls SET status = 'discovered', lease_until = NULL
                    WHERE origin IN ({marks}) AND status = 'fetching'""", origins)
            return conn.execute(
                f"""SELECT origin, token, lease_until, next_send, crawl_delay, robots_status,
                           robots_body, robots_at, robots_reason
                    FROM hosts WHERE origin IN ({marks})""", origins).fetchall()

        rows = await self._write(work)
        return [HostLease(o, t, lu, ns, cd, None if at is None else (st, body, at, reason))
                for o, t, lu, ns, cd, st, body, at, reason in rows]

    async def share(self, now: float, lease: float, owned: int) -> int:
        """This worker's fair share of the hosts with work: all of them over the live workers."""
        return await self._call(lambda conn: conn.execute(
            SHARE, {"now": now, "since": now - lease}).fetchone()[0])

    async def lease_urls(self, origins: list[str], limit: int, now: float) -> list[Lease]:
        """Lease up to *limit* due URLs (smallest depth first) of *origins* still owned."""
        if not origins or limit <= 0:
            return []

        def work(conn: sqlite3.Connection) -> list[Any]:
            marks = ",".join("?" * len(origins))
            owned = [row[0] for row in conn.execute(
                f"SELECT origin FROM hosts WHERE origin IN ({marks}) AND owner = ? "
                "AND lease_until >= ?", (*origins, self.worker, now))]
            if not owned:
                return []
            # at most a share per host (so every owned host gets work), each read from the
            # (origin, depth) index until it has its share, not every due URL sorted
            share = per_host_share(limit, len(owned))
            one = """SELECT * FROM (SELECT url, depth, referrer, attempts, rowid AS seq FROM urls
                     WHERE origin = ? AND (status = 'discovered'
                                           OR (status = 'retryable' AND next_try <= ?))
                     ORDER BY depth LIMIT ?)"""
            found = []
            for at in range(0, len(owned), COMPOUND_MAX):  # SQLite's limit on UNION terms
                part = owned[at:at + COMPOUND_MAX]
                found += conn.execute(
                    " UNION ALL ".join([one] * len(part)) + " ORDER BY depth, seq LIMIT ?",
                    [*(x for origin in part for x in (origin, now, share)), limit]).fetchall()
            found.sort(key=lambda row: (row[1], row[4]))
            rows = [row[:4] for row in found[:limit]]
            if rows:
                conn.execute(
                    "UPDATE urls SET status = 'fetching' WHERE url IN "
                    "(SELECT value FROM json_each(?))", (rows_json(row[0] for row in rows),))
            return rows

        return [Lease(url, depth, referrer, attempts)
                for url, depth, referrer, attempts in await self._write(work)]

    async def record_results(self, results: list[Result], tokens: dict[str, int],
                             contents: list[tuple[str, str | None, str | None]],
                             now: float, lease: list[str] = ()) -> Recorded:
        """Store the results of hosts whose token still matches, their links and digests."""
        origins = {origin_key(r[0]) for r in results}
        wanted = set(lease)
        # Encoded before the writer lock is taken, as if every host were still held (nearly
        # always so): the records' JSON was ~a tenth of the time the other worker waited.
        batch = Batch(results, contents, wanted)

        def work(conn: sqlite3.Connection) -> Recorded:
            outcome = Recorded()
            encoded = batch
            if origins:
                marks = ",".join("?" * len(origins))
                held = {o: (owner, token) for o, owner, token in conn.execute(
                    f"SELECT origin, owner, token FROM hosts WHERE origin IN ({marks})",
                    list(origins))}
                outcome.lost = {o for o in origins
                                if held.get(o) != (self.worker, tokens.get(o))}
            if outcome.lost:  # encoded again without the hosts lost
                encoded = Batch([r for r in results if origin_key(r[0]) not in outcome.lost],
                                 contents, wanted)
            outcome.refused = len(results) - len(encoded.results)
            # the URLs to lease are new links of these results, mostly: inserted leased
            leased = self._insert(conn, encoded.links, now)
            inserted = {x.url for x in leased}
            left = [url for url in wanted if url not in inserted]
            outcomes = encoded.outcomes
            # one found and fetched within this batch is recorded just below: not a lease
            outcome.leased = [x for x in leased if x.url not in outcomes]
            if outcomes:
                conn.execute(RECORD_ROWS, (encoded.outcomes_json,))
            if encoded.contents_json is not None:
                conn.execute(
                    """INSERT INTO contents (url, content_hash, simhash)
                       SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)
                       ORDER BY key""", (encoded.contents_json,))
            pages, errors = tally(encoded.results)
            conn.execute(
                "UPDATE workers SET seen = ?, pages = pages + ?, errors = errors + ? WHERE id = ?",
                (now, pages, errors, self.worker))
            if left:  # known already (another worker found them first, or a sitemap did)
                outcome.leased += [Lease(*row) for row in conn.execute(
                    """UPDATE urls SET status = 'fetching'
                       WHERE url IN (SELECT value FROM json_each(?)) AND status = 'discovered'
                       AND origin IN (SELECT origin FROM hosts WHERE owner = ? AND lease_until >= ?)
                       RETURNING url, depth, referrer, attempts""",
                    (json.dumps(left), self.worker, now))]
            return outcome

        return await self._write(work)

    async def renew(self, updates: list[HostUpdate], now: float, lease: float) -> set[str]:
        """Extend leases and store politeness; return the hosts this worker no longer owns."""
        def work(conn: sqlite3.Connection) -> set[str]:
            lost = set()
            for u in updates:
                cur = conn.execute(
                    """UPDATE hosts SET lease_until = ?, next_send = max(next_send, ?),
                       crawl_delay = coalesce(?, crawl_delay) WHERE origin = ? AND owner = ?
                       AND token = ?""",
                    (now + lease, u.next_send, u.crawl_delay, u.origin, self.worker, u.token))
                if cur.rowcount == 0:
                    lost.add(u.origin)
                elif u.robots is not None:
                    store_robots(conn, u)
            conn.execute("UPDATE workers SET seen = ? WHERE id = ?", (now, self.worker))
            return lost

        return await self._write(work)

    async def release(self, updates: list[HostUpdate], now: float) -> None:
        """Give hosts back, their in-flight URLs due again and their due time recomputed."""
        if not updates:
            return

        def work(conn: sqlite3.Connection) -> None:
            for u in updates:
                owned = conn.execute(
                    """UPDATE hosts SET next_send = max(next_send, ?),
                       crawl_delay = coalesce(?, crawl_delay) WHERE origin = ? AND owner = ?
                       AND token = ?""",
                    (u.next_send, u.crawl_delay, u.origin, self.worker, u.token))
                if owned.rowcount == 0:
                    continue  # lost meanwhile: the new owner has it
                if u.robots is not None:
                    store_robots(conn, u)
                conn.execute(
                    "UPDATE urls SET status = 'discovered', lease_until = NULL "
                    "WHERE origin = ? AND status = 'fetching'", (u.origin,))
                conn.execute(
                    f"UPDATE hosts SET owner = NULL, lease_until = NULL, due_at = {DUE_OF} "
                    "WHERE origin = ?", (u.origin,))

        await self._write(work)

    async def contents_since(self, cursor: int) -> tuple[list[tuple[str, str | None, str | None]], int]:
        """Content digests added after *cursor* (rowid order), and the new cursor."""
        rows = await self._call(lambda conn: conn.execute(
            "SELECT seq, url, content_hash, simhash FROM contents WHERE seq > ? ORDER BY seq",
            (cursor,)).fetchall())
        return [(u, h, s) for _, u, h, s in rows], (rows[-1][0] if rows else cursor)

    async def redirects(self) -> list[tuple[str, str]]:
        """(url, target) of recorded redirects whose target was first found through them."""
        return await self._call(
            lambda conn: [tuple(row) for row in conn.execute(REDIRECTS)])

    async def outstanding(self, now: float) -> Outstanding:
        """URLs due or in flight in the whole crawl, the earliest retry, free due hosts."""
        active, retry, free = await self._call(lambda conn: conn.execute(
            """SELECT EXISTS (SELECT 1 FROM urls WHERE status IN ('discovered', 'fetching')),
                      (SELECT min(next_try) FROM urls WHERE status = 'retryable'),
                      EXISTS (SELECT 1 FROM hosts WHERE due_at <= ?
                              AND (owner IS NULL OR lease_until < ?))""", (now, now)).fetchone())
        return Outstanding(active, retry, free)

    async def leave(self, now: float) -> None:
        """Mark this worker gone."""
        await self._write(lambda conn: conn.execute(
            "UPDATE workers SET seen = ?, left_at = ? WHERE id = ?", (now, now, self.worker)))

    async def forget(self, worker: str, now: float) -> None:
        """*worker* died: its leases end now (taken over at the next claim), and it is gone."""
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE hosts SET lease_until = ? WHERE owner = ? AND lease_until >= ?",
                         (now, worker, now))
            conn.execute("UPDATE workers SET left_at = ? WHERE id = ? AND left_at IS NULL",
                         (now, worker))

        await self._write(work)

    async def status(self, now: float) -> dict[str, Any]:
        """Progress across workers."""
        try:
            return await self._call(lambda conn: status_report(conn, now))
        except sqlite3.Error as exc:
            raise RuntimeError(f"cannot read the crawl state: {exc}") from exc
