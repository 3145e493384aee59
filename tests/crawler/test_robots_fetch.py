"""robots.txt fetching: once per origin under concurrency, redirects bounded, outcomes per RFC 9309."""

from __future__ import annotations

import asyncio

from crawler.errors import ConnectFailed
from crawler.fetcher import FetchResult
from crawler.robots_fetch import MAX_REDIRECTS, RobotsCache
from crawler.urls import Origin

ORIGIN = Origin("http", "127.0.1.1", 8000)


def result(url: str, status: int, body: bytes = b"", location: str | None = None) -> FetchResult:
    return FetchResult(url, status, "text/plain", location, None, body, False, 0.0, 0.0)


class FakeServer:
    """Answers by path; counts requests; can hold answers until released."""

    def __init__(self, routes: dict[str, FetchResult | Exception]) -> None:
        self.routes = routes
        self.requests: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def fetch(self, url: str) -> FetchResult:
        self.requests.append(url)
        await self.gate.wait()
        answer = self.routes[url.split(":8000", 1)[1]]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_concurrent_callers_share_one_fetch() -> None:
    server = FakeServer({"/robots.txt": result("", 200, b"User-agent: *\nDisallow: /no\n")})
    server.gate.clear()
    cache = RobotsCache(server.fetch, "fanmill", clock=lambda: 0.0)
    waiters = [asyncio.ensure_future(cache.rules_for(ORIGIN)) for _ in range(10)]
    await asyncio.sleep(0)
    server.gate.set()
    rules = await asyncio.gather(*waiters)
    assert len(server.requests) == 1
    assert not rules[0].allowed("http://127.0.1.1:8000/no") and rules[0].allowed("http://127.0.1.1:8000/yes")
    await cache.rules_for(ORIGIN)
    assert len(server.requests) == 1  # cached while fresh


async def test_redirects_are_followed_up_to_the_limit() -> None:
    routes = {"/robots.txt": result("", 301, location="/r1")}
    for i in range(1, MAX_REDIRECTS + 2):
        routes[f"/r{i}"] = result("", 302, location=f"/r{i + 1}")
    routes[f"/r{MAX_REDIRECTS}"] = result("", 200, b"User-agent: *\nDisallow: /\n")
    cache = RobotsCache(FakeServer(routes).fetch, "fanmill", clock=lambda: 0.0)
    assert (await cache.rules_for(ORIGIN)).outcome == "rules"
    routes[f"/r{MAX_REDIRECTS}"] = result("", 302, location=f"/r{MAX_REDIRECTS + 1}")
    routes[f"/r{MAX_REDIRECTS + 1}"] = result("", 200, b"")
    too_long = RobotsCache(FakeServer(routes).fetch, "fanmill", clock=lambda: 0.0)
    assert (await too_long.rules_for(ORIGIN)).outcome == "disallow-all"


async def test_loops_errors_and_statuses_map_to_the_rfc_outcomes() -> None:
    loop = {"/robots.txt": result("", 302, location="/robots.txt")}
    assert (await RobotsCache(FakeServer(loop).fetch, "u", lambda: 0.0).rules_for(ORIGIN)).outcome == "disallow-all"
    down = {"/robots.txt": ConnectFailed("refused")}
    assert (await RobotsCache(FakeServer(down).fetch, "u", lambda: 0.0).rules_for(ORIGIN)).outcome == "disallow-all"
    missing = {"/robots.txt": result("", 404)}
    assert (await RobotsCache(FakeServer(missing).fetch, "u", lambda: 0.0).rules_for(ORIGIN)).outcome == "allow-all"
    broken = {"/robots.txt": result("", 503)}
    assert (await RobotsCache(FakeServer(broken).fetch, "u", lambda: 0.0).rules_for(ORIGIN)).outcome == "disallow-all"


async def test_entries_expire_and_unreachable_is_retried_sooner() -> None:
    now = [0.0]
    server = FakeServer({"/robots.txt": result("", 503)})
    cache = RobotsCache(server.fetch, "u", clock=lambda: now[0])
    await cache.rules_for(ORIGIN)
    now[0] = 301.0
    server.routes["/robots.txt"] = result("", 200, b"")
    assert (await cache.rules_for(ORIGIN)).outcome == "rules"
    assert len(server.requests) == 2


async def test_store_reuses_fresh_answers_across_runs_and_refetches_stale_ones() -> None:
    store: dict = {}
    server = FakeServer({"/robots.txt": result("", 200, b"User-agent: *\nDisallow: /no\n")})
    first = RobotsCache(server.fetch, "fanmill", clock=lambda: 0.0, store=store, wall=lambda: 1000.0)
    assert not (await first.rules_for(ORIGIN)).allowed("http://127.0.1.1:8000/no")
    assert len(server.requests) == 1 and str(ORIGIN) in store
    # a new run (new process, new monotonic clock) an hour later: the answer is still fresh
    second = RobotsCache(server.fetch, "fanmill", clock=lambda: 5.0, store=store, wall=lambda: 4600.0)
    assert not (await second.rules_for(ORIGIN)).allowed("http://127.0.1.1:8000/no")
    assert len(server.requests) == 1
    # two days later it is stale: fetched again
    third = RobotsCache(server.fetch, "fanmill", clock=lambda: 5.0, store=store,
                        wall=lambda: 1000.0 + 48 * 3600)
    await third.rules_for(ORIGIN)
    assert len(server.requests) == 2
