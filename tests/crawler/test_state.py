"""Crawl state: statuses, leases, depth improvement, atomic results, resume after reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.state import CrawlState

A, B, C = "http://127.0.1.1:8000/a", "http://127.0.1.1:8000/b", "http://127.0.1.1:8000/c"


async def test_lease_record_and_resume_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "crawl.db"
    st = await CrawlState.open(path)
    await st.add_discovered([(A, 0, None)])
    [lease] = await st.lease_due(10, now=0.0, lease_seconds=30)
    assert lease.url == A and await st.lease_due(10, now=0.0, lease_seconds=30) == []
    await st.record_result(A, "fetched", {"url": A, "status": 200}, links=[(B, 1, A), (C, 1, A)])
    [b] = await st.lease_due(1, now=1.0, lease_seconds=30)
    await st.close()  # killed with B leased: the lease expires and B comes back; A stays fetched

    st = await CrawlState.open(path)
    assert await st.return_expired(now=100.0) == 1
    leased = {x.url for x in await st.lease_due(10, now=100.0, lease_seconds=30)}
    assert leased == {B, C} and b.url in leased
    assert (await st.counts())["fetched"] == 1
    await st.close()


async def test_a_url_keeps_its_smallest_depth_while_waiting(tmp_path: Path) -> None:
    st = await CrawlState.open(tmp_path / "d.db")
    await st.add_discovered([(A, 3, None), (B, 1, None)])
    await st.add_discovered([(A, 1, B), (B, 5, A)])
    leases = {x.url: (x.depth, x.referrer) for x in await st.lease_due(10, 0.0, 30)}
    assert leases == {A: (1, B), B: (1, None)}
    await st.close()


async def test_retryable_urls_come_back_when_due(tmp_path: Path) -> None:
    st = await CrawlState.open(tmp_path / "r.db")
    await st.add_discovered([(A, 0, None)])
    await st.lease_due(1, 0.0, 30)
    await st.record_result(A, "retryable", {"url": A, "status": 503}, next_try=10.0)
    assert await st.lease_due(1, 5.0, 30) == []
    [again] = await st.lease_due(1, 10.0, 30)
    assert again.url == A and again.attempts == 1
    with pytest.raises(ValueError):
        await st.record_result(A, "retryable", {})
    await st.close()


async def test_a_failed_result_rolls_back_its_links_too(tmp_path: Path) -> None:
    st = await CrawlState.open(tmp_path / "t.db")
    await st.add_discovered([(A, 0, None)])
    await st.lease_due(1, 0.0, 30)
    with pytest.raises(Exception):  # noqa: B017 - a CHECK constraint violation from SQLite
        await st.record_result(A, "exploded", {}, links=[(B, 1, A)])  # type: ignore[arg-type]
    assert await st.counts() == {"fetching": 1}  # no link B, A unchanged
    await st.close()


async def test_batch_after_a_transaction_left_open_by_a_cancelled_begin(tmp_path: Path) -> None:
    st = await CrawlState.open(tmp_path / "s.db")
    await st.add_discovered([("http://a/", 0, None)])
    await st.lease_due(10, 0.0, 60.0)
    await st._conn.execute("BEGIN IMMEDIATE")  # what a Ctrl-C during atransaction's BEGIN leaves
    await st.record_results([("http://a/", "fetched", {"url": "http://a/"}, [("http://a/b", 1, "http://a/")], None)])
    assert await st.counts() == {"fetched": 1, "discovered": 1}
    assert (await st.known())["http://a/b"] == (1, "discovered")
    await st.close()


async def test_batch_after_a_cancelled_commit_still_running(tmp_path: Path) -> None:
    # Ctrl-C ended the await of a COMMIT that aiosqlite's thread had not run yet: in_transaction
    # still reads true here, and a ROLLBACK queued behind that COMMIT failed ("no transaction is
    # active": seen once in a full test run). The thread is held until the batch has queued its
    # first statement, so the COMMIT runs between the batch's look and its statement.
    import asyncio
    import threading

    st = await CrawlState.open(tmp_path / "c.db")
    await st.add_discovered([("http://a/", 0, None)])
    await st.lease_due(10, 0.0, 60.0)
    conn = st._conn
    await conn.execute("BEGIN IMMEDIATE")
    holding, gate = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        gate.wait()

    held = asyncio.ensure_future(conn._execute(hold))  # aiosqlite's thread waits in hold()
    while not holding.is_set():  # hand-offs below are polled conditions, not timers
        await asyncio.sleep(0)
    commit = asyncio.ensure_future(conn.execute("COMMIT"))  # queued behind hold()
    while conn._tx.qsize() < 1:
        await asyncio.sleep(0)
    batch = asyncio.ensure_future(st.record_results(
        [("http://a/", "fetched", {"url": "http://a/"}, [], None)]))
    while conn._tx.qsize() < 2:  # the batch looked at in_transaction and queued its statement
        await asyncio.sleep(0)
    gate.set()
    try:
        await held
        await commit
        await batch
        assert await st.counts() == {"fetched": 1}
    finally:
        await st.close()


async def test_a_batch_keeps_each_urls_last_outcome_and_leases_what_it_was_told(tmp_path: Path) -> None:
    # one group commit: A retried then fetched (two attempts), B found and handed to memory at
    # once (stored leased), C found and waiting; the rows keep the batch's order (rowid)
    st = await CrawlState.open(tmp_path / "g.db")
    await st.add_discovered([(A, 0, None)])
    await st.lease_due(1, 0.0, 30)
    await st.record_results([(A, "retryable", None, [], 5.0),
                             (A, "fetched", {"url": A, "status": 200}, [(B, 1, A), (C, 1, A)], None)],
                            leased=[B], lease_until=99.0)
    rows = await st._conn.execute_fetchall(  # the test reads the rows directly
        "SELECT url, status, attempts, lease_until, next_try FROM urls ORDER BY rowid")
    assert [tuple(r) for r in rows] == [(A, "fetched", 2, None, None), (B, "fetching", 0, 99.0, None),
                                        (C, "discovered", 0, None, None)]
    await st.close()
