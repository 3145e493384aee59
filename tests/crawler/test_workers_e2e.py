"""Workers sharing one crawl, end to end, judged from the server's log: three workers on the fixture
site on each backend, `crawl --workers 3`, `crawl status`, a worker killed with SIGKILL whose hosts
another takes over after the lease, and PostgreSQL stopped in the middle of a crawl."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from crawler import CrawlConfig, crawl, normalize_url
from crawler.cli_workers import worker_pids
from crawler.state import open_shared
from fixtures.site import build_site, serve_site
from tests.crawler.loopback_site import Page, links, serve
from tests.crawler.test_fixture_site_e2e import _check

BOUND = 120  # seconds: only a crawl that never gets there waits this long


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    return request.getfixturevalue("pg_url")


def _records(paths: list[Path]) -> collections.Counter[str]:
    urls: collections.Counter[str] = collections.Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            urls[json.loads(line)["url"]] += 1
    return urls


async def test_three_workers_share_the_fixture_site(state, tmp_path) -> None:
    site = build_site(hosts=6, pages_per_host=12, seed=7, features="full", crawl_delay=0.12)
    outs = [tmp_path / f"out-{i}.jsonl" for i in range(3)]
    async with serve_site(site, port=0) as running:
        await asyncio.gather(*[
            crawl(list(running.seeds), CrawlConfig(
                delay=0.05, concurrency=8, timeout=10.0, state=state, worker=f"w{i}",
                lease=10.0, out=str(out)))
            for i, out in enumerate(outs)])
        truth = site.truth(running.port, seeds=running.seeds, user_agent="fanmill")
        # nothing disallowed or missed, no page twice, robots.txt once per host, gaps >= the
        # delay (or Crawl-delay) and one request per host in flight: across all three workers
        pages = _check(running, truth, delay=0.05, per_host=1)
    records = _records(outs)
    assert max(records.values()) == 1  # each URL in one worker's output, once
    assert set(pages) <= set(records)
    shared = await open_shared(state, "reader")
    try:
        report = await shared.status(0.0)
    finally:
        await shared.close()
    assert report["urls"].get("discovered", 0) == report["urls"].get("fetching", 0) == 0
    assert report["hosts_leased"] == 0  # every worker gave its hosts back
    assert sorted(w["id"] for w in report["workers"]) == ["w0", "w1", "w2"]
    assert all(w["left_at"] for w in report["workers"])


async def _run(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crawler", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=cwd)
    out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    return proc.returncode, out.decode(), err.decode()


async def test_crawl_workers_3_and_crawl_status(tmp_path) -> None:
    site = build_site(hosts=4, pages_per_host=15, seed=3, features="plain")
    db = tmp_path / "state.db"
    out = tmp_path / "out.jsonl"
    async with serve_site(site, port=0) as running:
        code, _, err = await _run(*running.seeds, "--workers", "3", "--state", str(db),
                                  "--out", str(out), "--delay", "0.02", "--warc",
                                  str(tmp_path / "warc"))
        truth = site.truth(running.port, seeds=running.seeds)
        pages = _check(running, truth, delay=0.02, per_host=1)
    assert code == 0, err
    files = sorted(tmp_path.glob("out.*.jsonl"))
    assert len(files) == 3 and not out.exists()  # one per worker, its id in the name
    ids = {f.name.split(".")[1] for f in files}
    warcs = os.listdir(tmp_path / "warc")
    assert {w for w in warcs for i in ids if f"fanmill-{i}-" in w} == set(warcs)
    records = _records(files)
    assert set(records) == set(pages) and max(records.values()) == 1
    assert f"{len(pages)} fetched" in err and "3 workers seen" in err
    code, text, _ = await _run("status", "--state", str(db))
    assert code == 0 and f"{len(pages)} fetched, 0 failed, 0 queued" in text
    code, text, _ = await _run("status", "--state", str(db), "--json")
    report = json.loads(text)
    assert report["urls"] == {"fetched": len(pages)} and {w["id"] for w in report["workers"]} == ids


async def test_workers_refuse_a_shared_stdout_and_a_bad_database(tmp_path) -> None:
    code, _, err = await _run("http://127.0.2.1:9/", "--workers", "2", "--state",
                              str(tmp_path / "s.db"), "--out", "-")
    assert code == 2 and "cannot be shared" in err
    code, _, err = await _run("http://127.0.2.1:9/", "--workers", "2")
    assert code == 2 and "--workers needs --state" in err
    code, _, err = await _run("http://127.0.2.1:9/", "--state", "postgresql://nowhere.invalid/db")
    assert code == 1 and err.count("\n") == 1 and "cannot connect to PostgreSQL" in err


def _chain_site(hosts: int, pages: int) -> dict:
    site = {}
    for h in range(hosts):
        site[(h, "/")] = Page(body=links("/p0"))
        for i in range(pages):
            site[(h, f"/p{i}")] = Page(body=links(f"/p{i + 1}") if i + 1 < pages else "end")
    return site


async def test_workers_resuming_a_single_process_crawl_fetch_nothing_twice(tmp_path) -> None:
    # every page links back to pages the first run fetched: a worker that took the hosts for
    # never-crawled ones (and queued their new links at once) would fetch those again
    site = {}
    for h in range(2):
        site[(h, "/")] = Page(body=links("/p0"))
        for i in range(10):
            site[(h, f"/p{i}")] = Page(body=links(*(["/", "/p0"] + ([f"/p{i + 1}"] if i < 9 else []))))
    db = str(tmp_path / "state.db")
    async with serve(site, hosts=2) as running:
        seeds = [running.url(0, "/"), running.url(1, "/")]
        code, _, err = await _run(*seeds, "--state", db, "--delay", "0", "--max-pages", "6", "-q")
        assert code == 0, err
        first = len(running.hits)
        code, _, err = await _run(*seeds, "--workers", "2", "--state", db, "--delay", "0", "-q",
                                  "--out", str(tmp_path / "out.jsonl"))
        assert code == 0, err
        hits = list(running.hits)
    pages = collections.Counter((h.host, h.path) for h in hits if h.path != "/robots.txt")
    assert len(pages) == 22 and max(pages.values()) == 1, pages  # all, each once, across runs
    assert 0 < sum(h.path != "/robots.txt" for h in hits[:first]) < 22


def _hold_sixth_page_request(site) -> asyncio.Event:
    """Hold the 6th page request to host 0 (its owner is then mid-crawl); the event says when."""
    held = asyncio.Event()

    def hold() -> bool:
        hit = site.hits[-1]
        if hit.host == site.hosts[0] and sum(
                h.host == hit.host and h.path != "/robots.txt" for h in site.hits) == 6:
            held.set()
            return True
        return False

    site.hold_when = hold
    return held


def _assert_polite_across_the_takeover(site, hits, delay: float) -> None:
    """The gap and one request in flight per host held, as the server saw it."""
    for host in site.hosts:
        times = sorted(h.t for h in hits if h.host == host)
        assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= delay - 0.005
        assert max(h.in_flight for h in hits if h.host == host) == 1


async def test_a_killed_worker_gives_its_hosts_to_another_after_the_lease(pg_url, tmp_path) -> None:
    delay, lease = 0.1, 2.0
    async with serve(_chain_site(2, 12), hosts=2) as site:
        held = _hold_sixth_page_request(site)  # host 0's owner is mid-crawl, by construction
        common = [site.url(0, "/"), site.url(1, "/"), "--state", pg_url, "--delay", str(delay),
                  "--lease", str(lease), "-q"]
        a = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crawler", *common, "--worker-id", "A",
            "--out", str(tmp_path / "a.jsonl"))
        await asyncio.wait_for(held.wait(), BOUND)
        a.send_signal(signal.SIGKILL)
        await a.wait()
        site.hold_when = None
        site.released.set()
        before = {h.path for h in site.hits if h.host == site.hosts[0]}
        shared = await open_shared(pg_url, "reader")
        try:
            committed = {r["url"] for r in await _fetched_records(shared)}
        finally:
            await shared.close()
        b_started = len(site.hits)
        code, _, err = await _run(*common, "--worker-id", "B", "--out", str(tmp_path / "b.jsonl"))
        assert code == 0, err
        hits = list(site.hits)
    urls = {normalize_url(f"http://{h.host}:{site.port}{h.path}") for h in hits}
    expected = {site.url(h, p) for h in range(2) for p in ["/"] + [f"/p{i}" for i in range(12)]}
    assert expected <= urls  # nothing missed
    by_b = [normalize_url(f"http://{h.host}:{site.port}{h.path}") for h in hits[b_started:]]
    assert not set(by_b) & committed  # what A committed is never fetched again
    again = [u for u, n in collections.Counter(
        normalize_url(f"http://{h.host}:{site.port}{h.path}") for h in hits).items() if n > 1]
    assert all(u not in committed for u in again)  # refetched: only what A had not recorded
    assert "/p4" in before and len(again) <= 4  # A's in-flight and uncommitted pages at most
    _assert_polite_across_the_takeover(site, hits, delay)
    code, text, _ = await _run("status", "--state", pg_url)
    assert code == 0 and "0 queued, 0 in flight" in text
    assert "  A: " in text and "  B: " in text and "2 workers seen" in text


async def test_a_killed_worker_of_crawl_workers_gives_its_hosts_back_at_once(tmp_path) -> None:
    # `crawl --workers 2` sees its worker die and ends its leases: with a lease of an hour, the
    # crawl still finishes (a crawl that waited for the expiry would never reach BOUND)
    delay = 0.05
    db = str(tmp_path / "state.db")
    async with serve(_chain_site(2, 12), hosts=2) as site:
        held = _hold_sixth_page_request(site)
        parent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crawler", site.url(0, "/"), site.url(1, "/"), "--workers", "2",
            "--state", db, "--delay", str(delay), "--lease", "3600", "-q",
            "--out", str(tmp_path / "out.jsonl"), stderr=asyncio.subprocess.PIPE)
        try:
            await asyncio.wait_for(held.wait(), BOUND)
            shared = await open_shared(db, "reader")
            try:
                owner = (await shared._call(lambda conn: conn.execute(  # the test reads the row
                    "SELECT owner FROM hosts WHERE origin = ?", (site.url(0, "/")[:-1],)).fetchall()
                ))[0][0]
            finally:
                await shared.close()
            os.kill(_child_with_worker_id(parent.pid, owner), signal.SIGKILL)
            site.hold_when = None
            site.released.set()
            _, err = await asyncio.wait_for(parent.communicate(), BOUND)
        finally:
            if parent.returncode is None:  # failed: no worker may outlive the test
                for worker in ("1", "2"):
                    with contextlib.suppress(AssertionError, ProcessLookupError):
                        os.kill(_child_with_worker_id(parent.pid, f"-{worker}"), signal.SIGKILL)
                parent.kill()
                await parent.wait()
        hits = list(site.hits)
    assert parent.returncode == 2, err  # a worker was killed: the run says so
    urls = {normalize_url(f"http://{h.host}:{site.port}{h.path}") for h in hits}
    expected = {site.url(h, p) for h in range(2) for p in ["/"] + [f"/p{i}" for i in range(12)]}
    assert expected <= urls  # the dead worker's host was finished by the other
    _assert_polite_across_the_takeover(site, hits, delay)


def _child_with_worker_id(parent: int, worker: str) -> int:
    """The pid of *parent*'s worker whose id ends with *worker* (its index: ID = HOST-PID-INDEX)."""
    index = int(worker.rsplit("-", 1)[1])
    pids = worker_pids(parent)
    assert index in pids, f"no child of {parent} runs worker {worker}: {pids}"
    return pids[index]


async def _fetched_records(shared) -> list[dict]:
    report = await shared.status(0.0)
    assert "fetched" in report["urls"]
    conn = shared._conn  # the test reads the rows directly: no API lists them
    rows = await conn.fetch("SELECT record FROM urls WHERE status = 'fetched'")
    return [json.loads(r[0]) for r in rows]


async def test_postgresql_going_away_is_a_clear_error_and_a_rerun_resumes(
        pg_cluster, pg_url, tmp_path) -> None:
    async with serve(_chain_site(1, 10), hosts=1) as site:
        held = asyncio.Event()

        def hold() -> bool:
            if sum(h.path != "/robots.txt" for h in site.hits) == 5:
                held.set()
                return True
            return False

        site.hold_when = hold
        args = [site.url(0, "/"), "--state", pg_url, "--delay", "0", "-q", "--lease", "2",
                "--out", str(tmp_path / "out.jsonl")]
        first = asyncio.ensure_future(_run(*args, "--worker-id", "A"))
        await asyncio.wait_for(held.wait(), BOUND)
        await asyncio.to_thread(pg_cluster.stop, "fast")
        site.hold_when = None
        site.released.set()
        code, _, err = await first
        assert code == 1 and "lost the PostgreSQL crawl state" in err and "Traceback" not in err
        await asyncio.to_thread(pg_cluster.start)
        code, _, err = await _run(*args, "--worker-id", "A")
        assert code == 0, err
        hits = list(site.hits)
    records = _records(list(tmp_path.glob("out.*.jsonl")))
    paths = collections.Counter(h.path for h in hits if h.path != "/robots.txt")
    assert set(paths) == {"/"} | {f"/p{i}" for i in range(10)}
    assert set(records) == {site.url(0, p) for p in paths}  # every fetched page recorded


async def test_ctrl_c_stops_every_worker_and_a_rerun_finishes(tmp_path) -> None:
    db = tmp_path / "state.db"

    def written() -> int:
        return sum(p.read_text().count("\n") for p in tmp_path.glob("out.*.jsonl"))

    async with serve(_chain_site(3, 8), hosts=3) as site:
        site.hold_when = lambda: written() >= 4  # Ctrl-C lands mid-crawl, by construction
        args = [site.url(h, "/") for h in range(3)] + [
            "--workers", "2", "--state", str(db), "--delay", "0.02", "--out",
            str(tmp_path / "out.jsonl")]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crawler", *args, stderr=asyncio.subprocess.PIPE,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        while written() < 4:
            assert proc.returncode is None, "the crawl ended before Ctrl-C"
            await asyncio.sleep(0.01)  # a poll: the held server keeps the crawl from ending
        proc.send_signal(signal.SIGINT)
        site.released.set()
        _, err = await asyncio.wait_for(proc.communicate(), BOUND)
        assert proc.returncode == 130, err.decode()
        site.hold_when = None
        code, _, err2 = await _run(*args)
        assert code == 0, err2
        hits = list(site.hits)
    records = _records(list(tmp_path.glob("out.*.jsonl")))
    expected = {site.url(h, p) for h in range(3) for p in ["/"] + [f"/p{i}" for i in range(8)]}
    assert set(records) == expected and max(records.values()) == 1
    pages = collections.Counter((h.host, h.path) for h in hits if h.path != "/robots.txt")
    assert sum(pages.values()) - len(pages) <= 2  # refetched: only what was in flight
