"""The page handler: what a Page holds, URLs and items it gives (every handler shape), its errors
recorded without stopping the crawl, `--handler`/`--items` at the command line."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from crawler import CrawlConfig, crawl
from crawler.cli import main
from tests.crawler.loopback_site import Page, links, serve

ROBOTS = "User-agent: *\nDisallow: /secret\n"


def _site() -> dict:
    return {
        (0, "/robots.txt"): Page(body=ROBOTS, content_type="text/plain"),
        (0, "/"): Page(body="<title>Home</title>" + links("/a")),
        (0, "/a"): Page(body="<title>A</title><p>caf\u00e9</p>", content_type="text/html",
                        headers={"X-Extra": "1"}),
        (0, "/only-by-handler"): Page(body="<title>Hidden</title>"),
        (0, "/secret"): Page(body="never"),
    }


async def test_a_page_holds_the_response_and_where_it_was_found(tmp_path) -> None:
    seen = {}

    def handler(page):
        seen[page.url] = page

    async with serve(_site(), hosts=1) as site:
        await crawl([site.url(0, "/")], CrawlConfig(delay=0), on_page=handler)
    a = seen[site.url(0, "/a")]
    assert a.status == 200 and a.headers["x-extra"] == "1" and a.depth == 1
    assert a.referrer == site.url(0, "/") and "café" in a.text and a.body == a.text.encode()
    assert seen[site.url(0, "/")].links == (site.url(0, "/a"),)
    assert site.url(0, "/robots.txt") not in seen  # robots.txt is not a page


@pytest.mark.parametrize("shape", ["return-list", "generator", "coroutine", "async-generator"])
async def test_every_handler_shape_gives_urls_and_items(tmp_path, shape) -> None:
    def things(page):
        found = re.search(r"<title>(.*?)</title>", page.text)
        out = [{"url": page.url, "title": found.group(1) if found else None}]
        if page.url.endswith(":%d/" % page_port[0]):
            # followed like links: the handler's URL is fetched, robots and scope still apply
            out += ["/only-by-handler", "/secret", "http://127.0.9.9/out-of-scope", "http://[::bad/"]
        return out

    def return_list(page):
        return things(page)

    def generator(page):
        yield from things(page)

    async def coroutine(page):
        await asyncio.sleep(0)
        return things(page)

    async def async_generator(page):
        for thing in things(page):
            yield thing

    handler = {"return-list": return_list, "generator": generator, "coroutine": coroutine,
               "async-generator": async_generator}[shape]
    items = tmp_path / "items.jsonl"
    async with serve(_site(), hosts=1) as site:
        page_port = [site.port]
        summary = await crawl([site.url(0, "/")], CrawlConfig(delay=0, items=str(items)),
                              on_page=handler)
        paths = {h.path for h in site.hits}
    got = {r["url"]: r["title"] for r in map(json.loads, items.read_text().splitlines())}
    assert got == {site.url(0, "/"): "Home", site.url(0, "/a"): "A",
                   site.url(0, "/only-by-handler"): "Hidden"}
    assert "/secret" not in paths and summary.robots_denied == 1 and summary.out_of_scope >= 1
    assert summary.items == 3 and summary.handler_errors == 0


async def test_a_failing_handler_is_recorded_and_the_crawl_goes_on(tmp_path) -> None:
    def handler(page):
        if page.url.endswith("/a"):
            raise RuntimeError("boom")
        if page.url.endswith("/"):
            return [{"not json": {1, 2}}, "/a"]
        return [42]

    out = tmp_path / "out.jsonl"
    async with serve(_site(), hosts=1) as site:
        summary = await crawl([site.url(0, "/")], CrawlConfig(delay=0, out=str(out)),
                              on_page=handler)
    records = {r["url"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert "handler raised RuntimeError: boom" in records[site.url(0, "/a")]["error"]
    assert "not JSON" in records[site.url(0, "/")]["error"]
    assert summary.handler_errors == 2 and summary.pages == 2 and summary.failed == 0


async def test_cli_handler_and_items(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "titles.py").write_text(
        "import re\n"
        "def title(page):\n"
        "    found = re.search(r'<title>(.*?)</title>', page.text)\n"
        "    if found:\n"
        "        yield {'url': page.url, 'title': found.group(1)}\n")
    monkeypatch.chdir(tmp_path)
    async with serve(_site(), hosts=1) as site:
        code = await asyncio.to_thread(main, [site.url(0, "/"), "--delay", "0", "--handler",
                                              "titles:title", "--items", "items.jsonl"])
    assert code == 0
    titles = [json.loads(line)["title"] for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert sorted(titles) == ["A", "Home"]
    assert "handler: 2 items, 0 errors" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--handler", "no_such_module_xyz:f"], ["--handler", "json"],
                                  ["--handler", "json:no_such_function"], ["--items", "i.jsonl"]])
def test_cli_handler_usage_errors_exit_2(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["http://127.0.0.1:9/", *argv])
    assert exc.value.code == 2
    assert "crawl: error:" in capsys.readouterr().err
