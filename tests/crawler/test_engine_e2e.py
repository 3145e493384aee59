"""End-to-end: the engine against a loopback multi-host site, judged from the server's records."""

from __future__ import annotations

import collections
import json

from crawler import CrawlConfig, crawl, normalize_url
from tests.crawler.loopback_site import Page, links, serve

ROBOTS_RULES = "User-agent: *\nDisallow: /private\nAllow: /private/ok\n"


def _site(port_hint: str = "") -> dict:
    pages = {
        (0, "/robots.txt"): Page(body=ROBOTS_RULES, content_type="text/plain"),
        (0, "/"): Page(body=links("/a", "./b", "/a#frag", "/A/../a", "/private/x", "/private/ok",
                                  "/redirect-bad", "/redirect-ok", "/loop1", "http://10.0.0.1/",
                                  "http://127.0.2.9/out-of-scope", "/same1", "/same2")),
        (0, "/a"): Page(body=links("/c", "/")),
        (0, "/b"): Page(body=links("/c")),
        (0, "/c"): Page(body="leaf"),
        (0, "/private/x"): Page(body="secret"),
        (0, "/private/ok"): Page(body="allowed by Allow"),
        (0, "/redirect-bad"): Page(status=301, headers={"Location": "/private/y"}),
        (0, "/private/y"): Page(body="never"),
        (0, "/redirect-ok"): Page(status=302, headers={"Location": "/c?from=redirect"}),
        (0, "/c?from=redirect"): Page(body="leaf again"),
        (0, "/loop1"): Page(status=307, headers={"Location": "/loop2"}),
        (0, "/loop2"): Page(status=308, headers={"Location": "/loop1"}),
        (0, "/same1"): Page(body=links("/dup-child")),
        (0, "/same2"): Page(body=links("/dup-child")),
        # host 1: fractional Crawl-delay, linked from nowhere but a seed
        (1, "/robots.txt"): Page(body="User-agent: *\nCrawl-delay: 0.25\n", content_type="text/plain"),
        (1, "/"): Page(body=links("/1", "/2", "/3")),
        (1, "/1"): Page(body="one"), (1, "/2"): Page(body="two"), (1, "/3"): Page(body="three"),
        # host 2: robots.txt answers 503: nothing but robots.txt may be requested
        (2, "/robots.txt"): Page(status=503, body="down"),
        (2, "/"): Page(body=links("/x")),
    }
    return pages


def _gaps(hits, host):
    times = [h.t for h in hits if h.host == host]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


async def test_polite_correct_crawl_judged_by_the_server(tmp_path) -> None:
    async with serve(_site()) as site:
        out = tmp_path / "out.jsonl"
        cfg = CrawlConfig(delay=0.05, concurrency=8, out=str(out), max_pages=100)
        summary = await crawl([site.url(i, "/") for i in range(3)], cfg)
        hits = site.hits
    paths = collections.Counter((h.host, h.path) for h in hits)
    h0, h1, h2 = site.hosts
    # robots.txt once per host (host 2's 503 tried 1 + 2 times); nothing fetched twice
    assert all(n == 1 for key, n in paths.items() if key != (h2, "/robots.txt")), paths
    assert paths[h2, "/robots.txt"] == 3
    assert {p for (h, p) in paths if h == h2} == {"/robots.txt"}
    fetched0 = {p for (h, p) in paths if h == h0}
    assert fetched0 == {"/robots.txt", "/", "/a", "/b", "/c", "/private/ok", "/redirect-bad",
                        "/redirect-ok", "/c?from=redirect", "/loop1", "/loop2", "/same1", "/same2",
                        "/dup-child"}
    assert {p for (h, p) in paths if h == h1} == {"/robots.txt", "/", "/1", "/2", "/3"}
    # politeness at the server: gaps and concurrency per host
    assert min(_gaps(hits, h0)) >= 0.05 - 0.005
    assert min(_gaps(hits, h1)) >= 0.25 - 0.005  # the Crawl-delay, from the robots.txt fetch on
    assert max(h.in_flight for h in hits) == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    unreachable = [r for r in records if r["error"] == "robots.txt unreachable (HTTP 503)"]
    assert [r["url"] for r in unreachable] == [site.url(2, "/")]  # named, not "denied"
    records = [r for r in records if r not in unreachable]
    assert len(records) == summary.pages == len({r["url"] for r in records})
    by_url = {r["url"]: r for r in records}
    assert by_url[site.url(0, "/redirect-bad")]["redirect_to"] == site.url(0, "/private/y")
    assert by_url[site.url(0, "/same2")]["duplicate_of"] or by_url[site.url(0, "/same1")]["duplicate_of"]
    assert by_url[site.url(0, "/a")]["depth"] == 1 and by_url[site.url(0, "/c")]["depth"] == 2
    assert summary.robots_denied >= 2  # /private/x, /private/y
    assert summary.out_of_scope >= 2 and summary.robots_fetches == 5


async def test_private_address_refused_even_when_in_scope() -> None:
    pages = {(0, "/"): Page(body=links("http://10.0.0.1/", "http://[fe80::1]/", "/ok")),
             (0, "/ok"): Page(body="ok")}
    async with serve(pages, hosts=1) as site:
        summary = await crawl([site.url(0, "/")], CrawlConfig(delay=0, allow_hosts=("*",)))
    assert summary.refused_private == 2 and summary.pages == 2


async def test_retry_after_pushes_the_host_out_and_the_retry_succeeds() -> None:
    pages = {(0, "/"): Page(body=links("/busy")),
             (0, "/busy"): Page(status=429, headers={"Retry-After": "1"}, then=Page(body="fine"))}
    async with serve(pages, hosts=1) as site:
        summary = await crawl([site.url(0, "/")], CrawlConfig(delay=0, retry_base=0.01))
        busy = [h.t for h in site.hits if h.path == "/busy"]
    assert len(busy) == 2 and busy[1] - busy[0] >= 1.0 - 0.005
    assert summary.retries == 1 and summary.statuses == {"200": 2}


async def test_max_depth_and_max_pages() -> None:
    pages = {(0, "/"): Page(body=links("/d1")), (0, "/d1"): Page(body=links("/d2")),
             (0, "/d2"): Page(body=links("/d3")), (0, "/d3"): Page(body="end")}
    async with serve(pages, hosts=1) as site:
        s1 = await crawl([site.url(0, "/")], CrawlConfig(delay=0, max_depth=2))
        s2 = await crawl([site.url(0, "/")], CrawlConfig(delay=0, max_pages=1))
    assert s1.pages == 3 and s2.pages == 1


async def test_resume_with_state_fetches_nothing_twice(tmp_path) -> None:
    chain = {(0, "/"): Page(body=links(*[f"/p{i}" for i in range(10)]))}
    chain.update({(0, f"/p{i}"): Page(body=f"page {i}") for i in range(10)})
    async with serve(chain, hosts=1) as site:
        state, out = str(tmp_path / "s.db"), str(tmp_path / "o.jsonl")
        first = await crawl([site.url(0, "/")], CrawlConfig(delay=0, max_pages=4, state=state, out=out))
        second = await crawl([site.url(0, "/")], CrawlConfig(delay=0, state=state, out=out))
        pages = collections.Counter(h.path for h in site.hits if h.path != "/robots.txt")
    assert first.pages == 4 and second.resumed and second.pages == 7
    assert set(pages) == {"/", *(f"/p{i}" for i in range(10))} and max(pages.values()) == 1
    urls = [json.loads(line)["url"] for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert sorted(urls) == sorted({normalize_url(site.url(0, p)) for p in pages})


async def test_query_trap_is_bounded_per_path() -> None:
    pages = {(0, "/"): Page(body=links(*[f"/cal?d={i}" for i in range(30)]))}
    pages.update({(0, f"/cal?d={i}"): Page(body=f"day {i}") for i in range(30)})
    async with serve(pages, hosts=1) as site:
        summary = await crawl([site.url(0, "/")], CrawlConfig(delay=0, max_query_variants=10))
        cal = [h for h in site.hits if h.path.startswith("/cal")]
    assert len(cal) == 10 and summary.trap_guarded == 20


async def test_a_page_found_later_at_a_smaller_depth_passes_that_depth_on() -> None:
    # Host 0 reaches /b2 at depth 2 (its links cut by --max-depth 2); host 1 links /b2 at depth 1,
    # later: the server holds host 1's "/" unanswered until /b2's record is made (its links judged
    # at depth 2), however fast either host is. /b3 is then within the limit and must be fetched.
    pages = {
        (0, "/robots.txt"): Page(body="User-agent: *\nAllow: /\n", content_type="text/plain"),
        (0, "/"): Page(body=links("/b1")),
        (0, "/b1"): Page(body=links("/b2")),
        (0, "/b2"): Page(body=links("/b3", "/r")),
        (0, "/b3"): Page(body=links("/b4")),
        (0, "/r"): Page(status=302, headers={"Location": "/r-target"}),
        (0, "/r-target"): Page(body="reached through a redirect at depth 2"),
        (0, "/b4"): Page(body="depth 3: beyond the limit"),
        (1, "/robots.txt"): Page(body="User-agent: *\nAllow: /\n", content_type="text/plain"),
    }
    records: list[str] = []
    held: list[str] = []

    async with serve(pages, hosts=2) as site:
        h0, h1 = site.hosts
        b2 = site.url(0, "/b2")
        pages[(1, "/")] = Page(body=links(b2))

        def hold() -> bool:  # hits[-1] is the request being decided
            if (site.hits[-1].host, site.hits[-1].path) != (h1, "/"):
                return False
            held.append(site.hits[-1].path)
            return True

        def on_record(record) -> None:
            records.append(record.url)
            if record.url == b2:
                site.released.set()  # /b2's links are judged: host 1's "/" may be answered

        site.hold_when = hold
        await crawl([site.url(0, "/"), site.url(1, "/")],
                    CrawlConfig(delay=0, max_depth=2, concurrency=4, max_pages=50),
                    on_record=on_record)
        order = [(h.host, h.path) for h in site.hits]
    # the scenario happened as planned: host 1's "/" was held, and recorded after /b2
    assert held == ["/"] and records.index(b2) < records.index(site.url(1, "/"))
    fetched = collections.Counter(order)
    assert fetched[(h0, "/b3")] == 1 and fetched[(h0, "/r-target")] == 1
    assert (h0, "/b4") not in fetched and fetched[(h0, "/b2")] == 1


async def test_duplicates_are_still_found_after_a_resume(tmp_path) -> None:
    words = [f"w{i % 97}x{i}" for i in range(400)]
    near_text = " ".join(words[:200] + ["changed"] + words[201:])
    same = "<html><body><p>the very same bytes</p></body></html>"
    pages = {
        (0, "/robots.txt"): Page(body="User-agent: *\nAllow: /\n", content_type="text/plain"),
        (0, "/"): Page(body=links("/a", "/n1", "/x")),
        (0, "/a"): Page(body=same),
        (0, "/n1"): Page(body="<p>" + " ".join(words) + "</p>"),
        (0, "/x"): Page(body=links("/b", "/n2")),
        (0, "/b"): Page(body=same),
        (0, "/n2"): Page(body="<p>" + near_text + "</p>"),
    }
    state, out = tmp_path / "state.db", tmp_path / "out.jsonl"
    async with serve(pages, hosts=1) as site:
        cfg = dict(delay=0, concurrency=1, state=str(state), out=str(out))
        await crawl([site.url(0, "/")], CrawlConfig(max_pages=3, **cfg))  # /, /a, /n1
        await crawl([site.url(0, "/")], CrawlConfig(**cfg))  # resumed: /x, /b, /n2
    recs = {json.loads(line)["url"].rsplit("/", 1)[1]: json.loads(line)
            for line in out.read_text().splitlines()}
    assert set(recs) == {"", "a", "n1", "x", "b", "n2"}
    assert recs["b"]["duplicate_of"].endswith("/a") and recs["a"]["duplicate_of"] is None
    assert recs["n2"]["near_duplicate_of"].endswith("/n1") and recs["n1"]["simhash"]


async def test_a_resumed_crawl_keeps_the_gap_across_the_restart(tmp_path) -> None:
    pages = {(0, "/robots.txt"): Page(body="User-agent: *\nAllow: /\n", content_type="text/plain"),
             (0, "/"): Page(body=links(*[f"/p{i}" for i in range(6)]))}
    pages.update({(0, f"/p{i}"): Page(body="leaf") for i in range(6)})
    cfg = dict(delay=0.4, concurrency=2, state=str(tmp_path / "s.db"))
    async with serve(pages, hosts=1) as site:
        await crawl([site.url(0, "/")], CrawlConfig(max_pages=2, **cfg))
        first_run = len(site.hits)
        await crawl([site.url(0, "/")], CrawlConfig(**cfg))  # resumed at once, same process
        times = [h.t for h in site.hits]
    assert first_run < len(times) and len({h.path for h in site.hits}) == len(site.hits)
    gap = times[first_run] - times[first_run - 1]
    assert gap >= 0.4 - 0.005, gap  # the restart does not reset the host's clock
