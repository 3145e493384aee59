"""`--sitemaps` end to end: robots.txt Sitemap lines, /sitemap.xml, an index, gzip, lastmod kept in
the state, scope applied, sitemap requests polite; hostile sitemaps cost an error line, no more."""

from __future__ import annotations

import gzip
import sqlite3
import zlib

from crawler import CrawlConfig, crawl
from tests.crawler.loopback_site import Page, serve

XML = "application/xml"


def urlset(*locs: str, lastmod: str | None = None) -> str:
    mod = f"<lastmod>{lastmod}</lastmod>" if lastmod else ""
    return ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            + "".join(f"<url><loc>{loc}</loc>{mod}</url>" for loc in locs) + "</urlset>")


def index(*locs: str) -> str:
    return ('<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            + "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs) + "</sitemapindex>")


async def test_sitemaps_from_robots_an_index_and_gzip_feed_the_crawl(tmp_path) -> None:
    pages: dict = {}
    state = tmp_path / "s.db"
    async with serve(pages, hosts=2) as site:
        u0, u1 = (lambda p: site.url(0, p)), (lambda p: site.url(1, p))
        pages.update({
            (0, "/robots.txt"): Page(body="User-agent: *\nDisallow: /private\n"
                                          "Sitemap: /maps/index.xml\n", content_type="text/plain"),
            (0, "/"): Page(body="<p>no links at all</p>"),
            (0, "/maps/index.xml"): Page(body=index(u0("/maps/one.xml.gz"), u0("/maps/two.xml")),
                                         content_type=XML),
            (0, "/maps/one.xml.gz"): Page(raw=gzip.compress(urlset(
                u0("/a"), u0("/b"), lastmod="2026-11-01").encode()),
                content_type="application/gzip"),
            (0, "/maps/two.xml"): Page(body=urlset(u0("/c"), u0("/private/x"),
                                                   "http://127.0.9.9/elsewhere"), content_type=XML),
            (0, "/a"): Page(body="a"), (0, "/b"): Page(body="b"), (0, "/c"): Page(body="c"),
            # host 1 names no sitemap in robots.txt: /sitemap.xml is tried
            (1, "/"): Page(body="<p>root</p>"),
            (1, "/sitemap.xml"): Page(body=urlset(u1("/d")), content_type=XML),
            (1, "/d"): Page(body="d"),
        })
        summary = await crawl([u0("/"), u1("/")], CrawlConfig(
            delay=0.05, sitemaps=True, state=str(state)))
        paths = [(h.host, h.path) for h in site.hits]
        hits = list(site.hits)
    fetched = {p for _h, p in paths}
    assert {"/a", "/b", "/c", "/d"} <= fetched and "/private/x" not in fetched
    assert summary.sitemap_files == 4 and not summary.sitemap_errors
    assert summary.sitemap_urls == 5  # /private/x too: admitted, then denied by robots.txt
    assert summary.out_of_scope >= 1 and summary.robots_denied == 1
    with sqlite3.connect(state) as conn:
        depths = dict(conn.execute("SELECT url, depth FROM urls"))
        lastmods = dict(conn.execute("SELECT url, lastmod FROM lastmods"))
    conn.close()
    assert depths[u0("/a")] == 0 and depths[u1("/d")] == 0
    assert lastmods == {u0("/a"): "2026-11-01", u0("/b"): "2026-11-01"}
    for host in site.hosts:  # sitemap requests kept the host's gap like any request
        times = sorted(h.t for h in hits if h.host == host)
        assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.05 - 0.005


def _bomb() -> bytes:
    """~1 GiB of zeros, gzipped in ~1 MiB: built from one compressed block repeated."""
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = block.compress(b"\0" * (1 << 20)) + block.flush(zlib.Z_FULL_FLUSH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + piece * 1024  # never finished: a reader must stop at its limit


async def test_hostile_sitemaps_cost_an_error_line_and_nothing_else() -> None:
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]><urlset><url><loc>&lol2;</loc></url>'
              "</urlset>")
    pages: dict = {}
    async with serve(pages, hosts=1) as site:
        u = lambda p: site.url(0, p)  # noqa: E731
        pages.update({
            (0, "/robots.txt"): Page(body="".join(f"Sitemap: {u(p)}\n" for p in (
                "/bomb.xml.gz", "/laughs.xml", "/loop.xml", "/nest.xml", "/broken.xml",
                "/missing.xml")), content_type="text/plain"),
            (0, "/"): Page(body="<p>root</p>"),
            (0, "/bomb.xml.gz"): Page(raw=_bomb(), content_type="application/gzip"),
            (0, "/laughs.xml"): Page(body=laughs, content_type=XML),
            (0, "/loop.xml"): Page(body=index(u("/loop.xml")), content_type=XML),
            (0, "/nest.xml"): Page(body=index(u("/inner.xml")), content_type=XML),
            (0, "/inner.xml"): Page(body=index(u("/deeper.xml")), content_type=XML),
            (0, "/deeper.xml"): Page(body=urlset(u("/deep")), content_type=XML),
            (0, "/broken.xml"): Page(body="<urlset><url><loc>", content_type=XML),
            (0, "/deep"): Page(body="never reached through the nested index"),
        })
        summary = await crawl([u("/")], CrawlConfig(delay=0, sitemaps=True,
                                                     max_body=8 << 20))
        paths = [h.path for h in site.hits]
    errors = "\n".join(summary.sitemap_errors)
    assert "/bomb.xml.gz" in errors and "/laughs.xml" in errors and "/broken.xml" in errors
    assert "/missing.xml: sitemap answered HTTP 404" in errors
    assert "/deeper.xml" not in paths and "/deep" not in paths  # nesting cut off
    assert paths.count("/loop.xml") == 1  # the loop is not followed
    assert summary.pages == 1 and summary.failed == 0  # the crawl itself went on
