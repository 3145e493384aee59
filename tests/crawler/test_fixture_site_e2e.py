"""End-to-end against the shared multi-host fixture site (fixtures/site), judged by the server's
request log and the generator's ground truth: nothing disallowed or out of scope fetched, nothing
required missed, no URL fetched twice (bar a 429's retry), robots.txt once per host (1 + retries when it answers 5xx), gaps >= the
delay (or Crawl-delay) and in-flight <= per_host as the server saw them."""

from __future__ import annotations

import collections
import json
from urllib.parse import urlsplit

from crawler import CrawlConfig, InvalidURL, crawl, normalize_url
from fixtures.site import build_site, serve_site

TOLERANCE = 0.005  # the 5 ms at the server
PAIR_GUARD = 30.0  # seconds: only a crawler that never sends its second request waits this long


def _fetched(running) -> collections.Counter[str]:
    urls: collections.Counter[str] = collections.Counter()
    for r in running.requests:
        try:
            urls[normalize_url(f"http://{r.host}:{running.port}{r.path}")] += 1
        except InvalidURL:
            urls[f"http://{r.host}:{running.port}{r.path}"] += 1
    return urls


def _check(running, truth, delay: float, per_host: int) -> collections.Counter[str]:
    fetched = _fetched(running)
    pages = collections.Counter({u: n for u, n in fetched.items()
                                 if urlsplit(u).path not in truth.robots_paths})
    assert not (set(pages) & truth.must_not_fetch), sorted(set(pages) & truth.must_not_fetch)[:5]
    assert not (truth.must_fetch - set(pages)), sorted(truth.must_fetch - set(pages))[:5]
    twice = {u: n for u, n in pages.items() if n > truth.may_repeat.get(u, 1)}
    assert not twice, twice
    trapped = sum(n for u, n in pages.items() if u.startswith(truth.trap_prefixes))
    assert trapped <= 64, trapped  # the guards stop both traps (path depth, repeated segments)
    robots = collections.Counter(r.host for r in running.requests if r.path == "/robots.txt")
    down = {r.host for r in running.requests if r.path == "/robots.txt" and r.status >= 500}
    # once per host; a 5xx is tried again as a page is: 1 + max_retries (2) requests
    assert all(n == (3 if host in down else 1) for host, n in robots.items()), robots
    assert max(r.in_flight for r in running.requests) <= per_host
    by_host: dict[str, list[float]] = collections.defaultdict(list)
    for r in running.requests:
        by_host[r.host].append(r.t)
    for host, times in by_host.items():
        gap_wanted = max(delay, truth.crawl_delays.get(host, 0.0))
        if gap_wanted > 0:
            times.sort()
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            assert not gaps or min(gaps) >= gap_wanted - TOLERANCE, (host, min(gaps), gap_wanted)
    return pages


async def test_full_site_correct_polite_and_recorded(tmp_path) -> None:
    site = build_site(hosts=6, pages_per_host=15, seed=7, features="full", crawl_delay=0.12)
    out = tmp_path / "records.jsonl"
    async with serve_site(site, port=0) as running:
        summary = await crawl(list(running.seeds), CrawlConfig(
            delay=0.05, concurrency=16, max_pages=400, timeout=10.0, user_agent="fanmill",
            out=str(out)))
        truth = site.truth(running.port, seeds=running.seeds, user_agent="fanmill")
        pages = _check(running, truth, delay=0.05, per_host=1)
        busy = sorted(r.t for r in running.requests if r.path == "/busy/429.html")
    assert summary.robots_denied > 0 and summary.pages == sum(pages.values()) - 1  # 429 retried
    robots_requests = sum(1 for r in running.requests if r.path in truth.robots_paths)
    assert summary.robots_fetches == robots_requests and summary.sitemap_fetches == 0
    assert len(busy) == 2 and busy[1] - busy[0] >= 1.0 - TOLERANCE  # Retry-After: 1 honoured
    records = {r["url"]: r for r in map(json.loads, out.read_text().splitlines())}
    unreachable = {u for u, r in records.items()
                   if r["error"] == "robots.txt unreachable (HTTP 503)" and r["status"] is None}
    down = next(h.address for h in site.hosts if h.robots_status == 503)
    assert unreachable and {urlsplit(u).hostname for u in unreachable} == {down}
    assert set(records) - unreachable == set(pages)
    assert summary.unreachable == {f"http://{down}:{running.port}": ["HTTP 503", len(unreachable)]}
    for group in truth.duplicates:  # the first fetched keeps its body; the others point at it
        originals = {records[u]["duplicate_of"] or u for u in group}
        assert len(originals) == 1 and sum(records[u]["duplicate_of"] is None for u in group) == 1
    for group in truth.near_duplicates:  # the later page names an earlier one
        flagged = [u for u in group if records[u]["near_duplicate_of"]]
        assert len(flagged) == len(group) - 1 and records[flagged[0]]["near_duplicate_of"] in group
    assert not [u for u, r in records.items() if r["near_duplicate_of"]
                and not any(u in g for g in truth.near_duplicates)]  # no false alarm
    by_path = {urlsplit(u).path: r for u, r in records.items()}
    assert "cut off" in by_path["/big/huge.html"]["error"]
    assert "binary" in by_path["/hostile/binary.html"]["error"]
    assert "undecodable" in by_path["/hostile/badutf8.html"]["error"]
    assert by_path["/hostile/badgzip.html"]["status"] is None
    assert "compressed" in by_path["/hostile/badgzip.html"]["error"]
    assert "redirects" in by_path["/r/long6"]["error"]
    assert by_path["/files/data.json"]["links"] == 0 and by_path["/files/pic.png"]["links"] == 0


async def test_another_user_agent_gets_its_own_robots_group() -> None:
    site = build_site(hosts=6, pages_per_host=8, seed=11, features="full", slow_seconds=0.05)
    async with serve_site(site, port=0) as running:
        await crawl(list(running.seeds), CrawlConfig(
            delay=0, concurrency=16, max_pages=400, timeout=10.0, user_agent="OtherBot/2.0"))
        truth = site.truth(running.port, seeds=running.seeds, user_agent="OtherBot/2.0")
        pages = _check(running, truth, delay=0, per_host=1)
    rules_host = site.hosts[0].address
    assert not [u for u in pages if urlsplit(u).hostname == rules_host]  # "otherbot: Disallow: /"
    assert any(u.endswith("/nofanmill/page.html") for u in truth.must_not_fetch)


async def test_depth_limit_keeps_every_page_within_it() -> None:
    site = build_site(hosts=6, pages_per_host=20, seed=5, features="full", slow_seconds=0.05)
    async with serve_site(site, port=0) as running:
        await crawl(list(running.seeds), CrawlConfig(
            delay=0, per_host=2, concurrency=16, max_pages=400, max_depth=2, timeout=10.0))
        truth = site.truth(running.port, seeds=running.seeds, max_depth=2)
        _check(running, truth, delay=0, per_host=2)
    unlimited = site.truth(running.port, seeds=running.seeds)
    assert len(truth.must_fetch) < len(unlimited.must_fetch)  # the limit did cut something


async def test_plain_site_fast_with_two_per_host() -> None:
    site = build_site(hosts=4, pages_per_host=30, seed=3, features="plain")
    # The server holds a request until a second one to its host is in flight whenever the crawler
    # has been shown another page of that host (pair_timeout, a liveness guard only): two per
    # host are in flight by construction, on a machine of any speed. Three must never be: each
    # answer then waits 50 ms, a window for a crawler over its allowance to show it (concurrency
    # 16 > 4 hosts x 2, so the global cap cannot hide it); a window, not a bound: it cannot fail
    # a correct crawler on any machine.
    async with serve_site(site, port=0, pair_timeout=PAIR_GUARD, latency=0.05) as running:
        await crawl(list(running.seeds), CrawlConfig(delay=0, per_host=2, concurrency=16,
                                                     max_pages=2000, timeout=2 * PAIR_GUARD))
        truth = site.truth(running.port, seeds=running.seeds)
        _check(running, truth, delay=0, per_host=2)
    assert len(truth.must_fetch) == 4 * 30
    assert running.pair_timeouts == 0, "the crawler left its second request per host unsent"
    assert running.pairs > 0
    paired = {r.host for r in running.requests if r.in_flight == 2}
    assert paired == {h.address for h in site.seed_hosts}  # the allowance is used on every host
    assert max(r.in_flight for r in running.requests) == 2  # ... and never exceeded


async def test_a_tiny_memory_window_spills_to_the_state_and_misses_nothing(tmp_path) -> None:
    site = build_site(hosts=3, pages_per_host=40, seed=9, features="plain")
    async with serve_site(site, port=0) as running:
        summary = await crawl(list(running.seeds), CrawlConfig(
            delay=0, per_host=2, concurrency=4, window=3, state=str(tmp_path / "s.db")))
        truth = site.truth(running.port, seeds=running.seeds)
        _check(running, truth, delay=0, per_host=2)
    assert summary.pages == len(truth.must_fetch)
