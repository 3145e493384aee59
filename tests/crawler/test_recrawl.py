"""`--recrawl AGE`: URLs older than AGE are fetched again with their validators; a 304 is recorded
as unchanged (a server-not-modified revisit in the WARC); a changed page's new links are followed."""

from __future__ import annotations

import json

from crawler import CrawlConfig, crawl
from tests.crawler.loopback_site import Page, links, serve
from tests.crawler.test_warc_e2e import read_warc

MODIFIED = "Sun, 01 Nov 2026 10:00:00 GMT"


def _site() -> dict:
    return {
        (0, "/"): Page(body=links("/etag", "/modified", "/plain")),
        (0, "/etag"): Page(body="<p>tagged</p>", headers={"ETag": '"v1"'}),
        (0, "/modified"): Page(body="<p>dated</p>", headers={"Last-Modified": MODIFIED}),
        (0, "/plain"): Page(body="<p>no validators</p>"),
        (0, "/new"): Page(body="<p>linked only from the changed page</p>"),
    }


async def test_recrawl_asks_with_validators_and_records_304_as_unchanged(tmp_path) -> None:
    pages = _site()
    state, out, warc = tmp_path / "s.db", tmp_path / "out.jsonl", tmp_path / "warc"
    config = dict(delay=0, state=str(state), out=str(out), warc=str(warc))
    async with serve(pages, hosts=1) as site:
        first = await crawl([site.url(0, "/")], CrawlConfig(**config))
        assert first.pages == 4
        again = await crawl([site.url(0, "/")], CrawlConfig(**config, recrawl=3600.0))
        assert again.pages == 0 and again.recrawled == 0  # nothing is an hour old yet
        pages[0, "/plain"] = Page(body=links("/new"))  # changed, with a new link
        before = len(site.hits)
        summary = await crawl([site.url(0, "/")], CrawlConfig(**config, recrawl=0.0))
        hits = {h.path: h for h in site.hits[before:]}
    assert summary.recrawled == 4 and summary.unchanged == 2 and summary.pages == 5
    assert hits["/etag"].conditional == '"v1"' and hits["/modified"].conditional == MODIFIED
    assert hits["/plain"].conditional is None and "/new" in hits and "/robots.txt" not in hits
    records = [json.loads(line) for line in out.read_text().splitlines()]
    latest = {r["url"]: r for r in records}  # the recrawl's records come last
    etag = latest[site.url(0, "/etag")]
    assert etag["status"] == 304 and etag["etag"] == '"v1"'
    first_etag = next(r for r in records if r["url"] == site.url(0, "/etag"))
    assert etag["content_hash"] == first_etag["content_hash"]  # the content is the one recorded
    assert latest[site.url(0, "/new")]["status"] == 200
    revisits = {h["WARC-Target-URI"]: h for kind, h, _, _ in read_warc(warc) if kind == "revisit"}
    not_modified = {u for u, h in revisits.items()
                    if h["WARC-Profile"].endswith("/revisit/server-not-modified")}
    assert not_modified == {site.url(0, "/etag"), site.url(0, "/modified")}
    assert all(revisits[u]["WARC-Refers-To-Date"] for u in not_modified)
    # "/" came back 200 with the same bytes: an identical-payload revisit, not a second copy
    assert revisits[site.url(0, "/")]["WARC-Profile"].endswith("/identical-payload-digest")


async def test_a_second_recrawl_still_has_the_validators_a_304_kept(tmp_path) -> None:
    pages = _site()
    state = tmp_path / "s.db"
    async with serve(pages, hosts=1) as site:
        await crawl([site.url(0, "/")], CrawlConfig(delay=0, state=str(state)))
        await crawl([site.url(0, "/")], CrawlConfig(delay=0, state=str(state), recrawl=0.0))
        before = len(site.hits)
        summary = await crawl([site.url(0, "/")], CrawlConfig(delay=0, state=str(state),
                                                               recrawl=0.0))
        asked = {h.path: h.conditional for h in site.hits[before:]}
    assert summary.unchanged == 2 and asked["/etag"] == '"v1"' and asked["/modified"] == MODIFIED
