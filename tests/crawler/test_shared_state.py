"""The shared-state contract (crawler/state/shared.py), run against both backends: SQLite and a
real PostgreSQL cluster (started by `make test`, fixtures/postgres.py)."""

from __future__ import annotations

import pytest

from crawler.state import HostUpdate, open_shared
from crawler.state.shared import origin_key

H1, H2 = "http://127.0.1.1:8000", "http://127.0.1.2:8000"
LEASE, DELAY = 30.0, 1.0


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "shared.db")
    return request.getfixturevalue("pg_url")


async def _pair(target: str):
    a = await open_shared(target, "A")
    b = await open_shared(target, "B")
    await a.join(0.0)
    await b.join(0.0)
    return a, b


def _rec(url: str) -> dict:
    return {"url": url, "status": 200}


async def test_a_host_is_owned_by_one_worker_until_its_lease_expires(target) -> None:
    a, b = await _pair(target)
    try:
        await a.add_discovered([(f"{H1}/", 0, None), (f"{H1}/x", 1, None)])
        [claim] = await a.claim_hosts(5, now=100.0, lease=LEASE, delay=DELAY)
        assert claim.origin == H1 and claim.next_send == 0
        assert await b.claim_hosts(5, now=110.0, lease=LEASE, delay=DELAY) == []
        leased = await a.lease_urls([H1], 1, now=110.0)
        assert [x.url for x in leased] == [f"{H1}/"]  # smallest depth first
        assert await b.lease_urls([H1], 10, now=110.0) == []  # B does not own it
        # A dies: after the expiry B takes the host, with the URL A had in flight due again,
        # and the host counted as sent to just now (A's last send is unknown)
        [taken] = await b.claim_hosts(5, now=131.0, lease=LEASE, delay=DELAY)
        assert taken.origin == H1 and taken.token > claim.token
        assert taken.next_send >= 131.0 + DELAY
        assert {x.url for x in await b.lease_urls([H1], 10, now=131.0)} == {f"{H1}/", f"{H1}/x"}
        assert await a.lease_urls([H1], 10, now=131.0) == []  # A's lease is gone
    finally:
        await a.close()
        await b.close()


async def test_a_worker_seen_dead_gives_its_hosts_back_before_the_expiry(target) -> None:
    a, b = await _pair(target)
    try:
        await a.add_discovered([(f"{H1}/", 0, None), (f"{H1}/x", 1, None)])
        [claim] = await a.claim_hosts(5, now=100.0, lease=LEASE, delay=DELAY)
        await a.lease_urls([H1], 1, now=100.0)
        assert await b.claim_hosts(5, now=101.0, lease=LEASE, delay=DELAY) == []
        await b.forget("A", now=102.0)  # its supervisor saw A exit: no waiting for the expiry
        [taken] = await b.claim_hosts(5, now=103.0, lease=LEASE, delay=DELAY)
        assert taken.origin == H1 and taken.token > claim.token
        assert taken.next_send >= 103.0 + DELAY  # the gap is kept as at any takeover
        assert {x.url for x in await b.lease_urls([H1], 10, now=103.0)} == {f"{H1}/", f"{H1}/x"}
        report = await b.status(103.0)
        assert {w["id"]: bool(w["left_at"]) for w in report["workers"]} == {"A": True, "B": False}
        await a.forget("B", now=104.0)
        await a.forget("nobody", now=104.0)  # forgetting an unknown or already gone worker: no-op
    finally:
        await a.close()
        await b.close()


async def test_a_stale_worker_cannot_record_over_the_new_owner(target) -> None:
    a, b = await _pair(target)
    try:
        url = f"{H1}/"
        await a.add_discovered([(url, 0, None)])
        [old] = await a.claim_hosts(1, 0.0, LEASE, DELAY)
        await a.lease_urls([H1], 10, 0.0)
        [new] = await b.claim_hosts(1, LEASE + 1, LEASE, DELAY)
        await b.lease_urls([H1], 10, LEASE + 1)
        # A wakes up and writes late: refused, and told it lost the host
        late = await a.record_results([(url, "fetched", _rec(url), [(f"{H2}/from-a", 1, url)],
                                        None)], {H1: old.token}, [], LEASE + 2)
        assert late.lost == {H1} and late.refused == 1
        assert await a.renew([HostUpdate(H1, old.token, 0.0)], LEASE + 2, LEASE) == {H1}
        done = await b.record_results([(url, "fetched", _rec(url), [], None)], {H1: new.token},
                                      [], LEASE + 3)
        assert done.lost == set() and done.refused == 0
        report = await b.status(LEASE + 3)
        assert report["urls"] == {"fetched": 1}  # A's link was refused with its result
        assert {w["id"]: w["pages"] for w in report["workers"]} == {"A": 0, "B": 1}
    finally:
        await a.close()
        await b.close()


async def test_release_keeps_the_gap_and_robots_for_the_next_owner(target) -> None:
    a, b = await _pair(target)
    try:
        await a.add_discovered([(f"{H1}/", 0, None), (f"{H1}/later", 0, None)])
        [claim] = await a.claim_hosts(1, 0.0, LEASE, DELAY)
        [lease] = await a.lease_urls([H1], 1, 0.0)
        robots = (200, b"User-agent: *\nCrawl-delay: 2\n", 5.0, None)
        await a.release([HostUpdate(H1, claim.token, next_send=9.5, crawl_delay=2.0,
                                    robots=robots)], now=8.0)
        # released cleanly: B gets the stored send time (not pushed further), the Crawl-delay,
        # robots.txt, and the URL A had leased is due again
        [got] = await b.claim_hosts(1, 8.0, LEASE, DELAY)
        assert (got.next_send, got.crawl_delay) == (9.5, 2.0)
        assert got.robots is not None and bytes(got.robots[1]) == robots[1]
        assert {x.url for x in await b.lease_urls([H1], 10, 8.0)} == {lease.url, f"{H1}/later"}
    finally:
        await a.close()
        await b.close()


async def test_hosts_are_shared_fairly_and_new_links_make_a_host_due(target) -> None:
    a, b = await _pair(target)
    try:
        hosts = [f"http://127.0.1.{i}:8000" for i in range(1, 7)]
        await a.add_discovered([(f"{h}/", 0, None) for h in hosts])
        mine = await a.claim_hosts(16, 0.0, LEASE, DELAY)
        theirs = await b.claim_hosts(16, 0.0, LEASE, DELAY)
        assert len(mine) == 3 and len(theirs) == 3  # 6 free hosts, 2 live workers
        assert await a.share(0.0, LEASE, 3) == 3
        c = await open_shared(target, "C")
        await c.join(0.0)  # a third worker joins: the others' share drops (they give hosts back)
        assert await a.share(0.0, LEASE, 3) == 2 and await c.claim_hosts(16, 0.0, LEASE, DELAY) == []
        await c.leave(0.0)  # and leaves: it no longer counts
        await c.close()
        assert {h.origin for h in mine} | {h.origin for h in theirs} == set(hosts)
        # a host with nothing left is released; a link found later makes it due again
        h = mine[0]
        [lease] = await a.lease_urls([h.origin], 10, 0.0)
        await a.record_results([(lease.url, "fetched", _rec(lease.url), [], None)],
                               {h.origin: h.token}, [], 1.0)
        await a.release([HostUpdate(h.origin, h.token, 0.0)], 1.0)
        assert await a.claim_hosts(16, 2.0, LEASE, DELAY) == []
        assert (await a.outstanding(2.0)).active == 1
        other = theirs[0]
        [l2] = await b.lease_urls([other.origin], 10, 2.0)
        await b.record_results([(l2.url, "fetched", _rec(l2.url), [(f"{h.origin}/new", 1, l2.url),
                                                                   (lease.url, 1, l2.url)], None)],
                               {other.origin: other.token}, [], 3.0)
        [again] = await a.claim_hosts(16, 4.0, LEASE, DELAY)
        assert again.origin == h.origin
        assert [x.url for x in await a.lease_urls([h.origin], 10, 4.0)] == [f"{h.origin}/new"]
    finally:
        await a.close()
        await b.close()


async def test_retries_depth_contents_and_what_is_outstanding(target) -> None:
    a, b = await _pair(target)
    try:
        u, v = f"{H1}/u", f"{H1}/v"
        await a.add_discovered([(u, 3, None), (v, 2, None)])
        await b.add_discovered([(u, 1, v)])  # found again closer: moves up
        [claim] = await a.claim_hosts(1, 0.0, LEASE, DELAY)
        leased = await a.lease_urls([H1], 10, 0.0)
        assert [(x.url, x.depth, x.referrer) for x in leased] == [(u, 1, v), (v, 2, None)]
        tokens = {H1: claim.token}
        await a.record_results([(u, "retryable", None, [], 20.0),
                                (v, "fetched", _rec(v), [], None)], tokens,
                               [(v, "ab" * 32, "0123456789abcdef")], 1.0)
        left = await a.outstanding(1.0)
        assert (left.active, left.next_retry) == (0, 20.0)
        assert await a.lease_urls([H1], 10, 10.0) == []  # not due before 20
        [retry] = await a.lease_urls([H1], 10, 20.0)
        assert (retry.url, retry.attempts) == (u, 1)
        rows, cursor = await b.contents_since(0)
        assert rows == [(v, "ab" * 32, "0123456789abcdef")]
        assert await b.contents_since(cursor) == ([], cursor)
        assert origin_key(u) == H1
    finally:
        await a.close()
        await b.close()


async def test_a_bad_postgresql_url_is_one_clear_error() -> None:
    from crawler.errors import StateError

    with pytest.raises(StateError, match="cannot connect to PostgreSQL"):
        await open_shared("postgresql://fanmill@/nope?host=/nonexistent-dir&port=5432", "A")


async def test_joining_beside_a_busy_worker_takes_no_table_lock(pg_url) -> None:
    """A worker (or `crawl status`) opening a crawl that exists runs no DDL: CREATE INDEX locks
    a table against the row locks a claiming worker holds, and the two deadlocked."""
    import asyncio

    import asyncpg

    first = await open_shared(pg_url, "w1")
    await first.add_discovered([(f"{H1}/", 0, None)])
    busy = await asyncpg.connect(pg_url)
    try:
        async with busy.transaction():
            await busy.execute("UPDATE hosts SET owner = 'w1'")  # a claim in progress
            second = await asyncio.wait_for(open_shared(pg_url, "w2"), 30)
            await busy.execute("UPDATE urls SET status = 'discovered'")
        await second.close()
    finally:
        await busy.close()
        await first.close()


async def test_links_of_owned_hosts_are_leased_by_the_commit_that_finds_them(target) -> None:
    a, b = await _pair(target)
    try:
        root, old, new = f"{H1}/", f"{H1}/old", f"{H1}/new"
        await a.add_discovered([(root, 0, None), (old, 1, None)])
        [h] = await a.claim_hosts(1, 0.0, LEASE, DELAY)
        leased = await a.lease_urls([H1], 10, 0.0)
        assert {x.url for x in leased} == {root, old}
        await a.record_results([(old, "fetched", _rec(old), [], None)], {H1: h.token}, [], 1.0)
        # the root page links a new URL and one already fetched: only the new one is leased
        done = await a.record_results(
            [(root, "fetched", _rec(root), [(new, 1, root), (old, 1, root)], None)],
            {H1: h.token}, [], 2.0, lease=[new, old])
        assert [(x.url, x.depth, x.referrer) for x in done.leased] == [(new, 1, root)]
        assert await a.lease_urls([H1], 10, 3.0) == []  # already leased: not handed out twice
        # one another worker added (waiting) is leased as stored; one found and fetched in the
        # same batch is recorded, not leased
        waiting, quick = f"{H1}/waiting", f"{H1}/quick"
        await b.add_discovered([(waiting, 3, None)])
        done = await a.record_results(
            [(new, "fetched", _rec(new), [(waiting, 2, new), (quick, 2, new)], None),
             (quick, "fetched", _rec(quick), [], None)],
            {H1: h.token}, [], 3.0, lease=[waiting, quick])
        assert [(x.url, x.depth) for x in done.leased] == [(waiting, 2)]  # moved up, then leased
        assert await a.lease_urls([H1], 10, 4.0) == []
        # a worker that does not own the host leases nothing
        other = await b.record_results([], {}, [], 3.0, lease=[f"{H1}/x"])
        assert other.leased == []
    finally:
        await a.close()
        await b.close()


async def test_sqlite_workers_open_a_new_file_one_at_a_time(tmp_path) -> None:
    # three workers opening a new file at once raced to switch it to WAL ("database is locked"
    # at once): opening waits for the writer lock, so while another holds it nothing is created
    import asyncio
    import fcntl
    import os

    path = tmp_path / "new.db"
    fd = os.open(f"{path}.writer", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        opening = [asyncio.create_task(open_shared(str(path), f"w{i}")) for i in range(3)]
        await asyncio.sleep(0.2)  # an open that did not wait would have created the file by now
        assert not any(task.done() for task in opening) and not path.exists()
        fcntl.flock(fd, fcntl.LOCK_UN)
        for state in await asyncio.gather(*opening):  # then all three open, none refused
            await state.join(0.0)
            await state.close()
    finally:
        os.close(fd)
