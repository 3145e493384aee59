"""A host that cannot be reached is named with its reason, its URLs are failed records, exit 3;
rules a host really served stay "robots.txt denied"; a seed that is not a URL is a usage error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator

import pytest

from crawler import CrawlConfig, crawl
from crawler.cli import main
from crawler.fetcher import GuardedResolver
from tests.crawler.loopback_site import Page, links, serve


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def records(path) -> dict[str, dict]:
    return {r["url"]: r for r in map(json.loads, path.read_text().splitlines())}


async def test_refused_connection_is_named_with_its_reason_and_fails(tmp_path) -> None:
    out = tmp_path / "out.jsonl"
    with closed_port() as port:
        seeds = [f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/other"]
        summary = await crawl(seeds, CrawlConfig(delay=0, max_retries=0, out=str(out)))
    assert summary.pages == 0 and summary.robots_denied == 0 and summary.failed == 2
    got = records(out)
    assert set(got) == set(seeds)
    assert all(r["status"] is None and r["error"] == "robots.txt unreachable (connection refused)"
               for r in got.values())
    lines = summary.lines()
    assert f"127.0.0.1:{port}: robots.txt unreachable (connection refused): 2 URLs not fetched" in lines
    assert lines[-1] == "nothing fetched: every host was unreachable (1 host)"


async def test_silent_server_is_a_timeout() -> None:
    with silent_port() as port:
        summary = await crawl([f"http://127.0.0.1:{port}/"],
                              CrawlConfig(delay=0, max_retries=0, timeout=0.3))
    assert summary.unreachable == {f"http://127.0.0.1:{port}": ["timeout", 1]}


async def test_invalid_name_fails_without_any_query() -> None:
    class NoNetwork:
        async def resolve(self, *args, **kwargs):
            raise AssertionError("a .invalid name must not reach the resolver")

        async def close(self) -> None:
            pass

    with pytest.raises(socket.gaierror):
        await GuardedResolver(None, NoNetwork()).resolve("no-such-host.invalid", 80)
    summary = await crawl(["http://no-such-host.invalid/"], CrawlConfig(delay=0, max_retries=0))
    assert summary.unreachable == {"http://no-such-host.invalid": ["name not resolved", 1]}
    assert summary.failed == 1 and summary.pages == 0


async def test_robots_5xx_is_retried_with_backoff_then_unreachable(tmp_path) -> None:
    # host 0 is fine and links to host 1, whose robots.txt answers 503 every time; host 2's
    # robots.txt really denies: that stays "denied", not unreachable
    pages: dict[tuple[int, str], Page] = {}
    out = tmp_path / "out.jsonl"
    async with serve(pages, hosts=3) as site:  # the server reads *pages* per request
        pages.update({
            (0, "/"): Page(body=links("/a", site.url(1, "/x"), site.url(2, "/no"))),
            (0, "/a"): Page(body="fine"),
            (1, "/robots.txt"): Page(status=503, body="down"),
            (2, "/robots.txt"): Page(body="User-agent: *\nDisallow: /no\n",
                                     content_type="text/plain"),
        })
        summary = await crawl([site.url(0, "/"), site.url(1, "/")], CrawlConfig(
            delay=0, max_retries=2, retry_base=0.01, out=str(out),
            allow_hosts=(site.hosts[2],), allow_private=True))
        robots_1 = [h for h in site.hits if h.host == site.hosts[1] and h.path == "/robots.txt"]
        other_1 = [h for h in site.hits if h.host == site.hosts[1] and h.path != "/robots.txt"]
    assert len(robots_1) == 3 and not other_1  # 1 + 2 retries, nothing else sent to that host
    got = records(out)
    unreachable = {u for u, r in got.items() if r["error"] == "robots.txt unreachable (HTTP 503)"}
    assert unreachable == {site.url(1, "/"), site.url(1, "/x")}
    assert summary.robots_denied == 1 and site.url(2, "/no") not in got
    assert summary.pages == 2 and summary.failed == 2
    assert summary.unreachable == {f"http://{site.hosts[1]}:{site.port}": ["HTTP 503", 2]}


async def test_cli_exit_3_and_one_line_when_every_seed_host_fails(capsys) -> None:
    with closed_port() as port:
        code = await asyncio.to_thread(main, [f"http://127.0.0.1:{port}/", "--max-retries", "0"])
    err = capsys.readouterr().err
    assert code == 3
    assert f"127.0.0.1:{port}: robots.txt unreachable (connection refused): 1 URL not fetched" in err
    assert err.count("nothing fetched: every host was unreachable") == 1
    assert "URLs denied" in err and "1 URLs denied" not in err


@pytest.mark.parametrize("seed", ["not-a-url", "mailto:x@y", "ftp://example.com/", "/relative"])
def test_a_seed_that_is_not_an_http_url_is_a_usage_error(seed, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([seed, "-q"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("crawl: error: seed ") and "Traceback" not in err


async def test_a_cancel_landing_just_before_a_zero_wait_stops_the_crawl(monkeypatch) -> None:
    # Ctrl-C cancels the crawl's task while it runs; if the dispatcher then waits with a timeout
    # of 0, Python 3.11's asyncio.timeout turned that cancel into a TimeoutError and the crawl went
    # on (a flaky Ctrl-C test showed it). Placed by construction: the frontier cancels the task.
    from crawler.frontier import Frontier, Wait

    real = Frontier.next_ready
    fired = []

    def cancel_then_wait(self, now):
        step = real(self, now)
        if not fired and not isinstance(step, Wait) and len(self):
            fired.append(True)
            asyncio.current_task().cancel()  # as asyncio.run's SIGINT handler does
            return Wait(0.0)
        return step

    monkeypatch.setattr(Frontier, "next_ready", cancel_then_wait)
    pages = {(0, "/"): Page(body=links(*[f"/p{i}" for i in range(20)]))}
    pages.update({(0, f"/p{i}"): Page(body="x") for i in range(20)})
    async with serve(pages, hosts=1) as site:
        task = asyncio.create_task(crawl([site.url(0, "/")], CrawlConfig(delay=0)))
        with pytest.raises(asyncio.CancelledError):
            # the guard only matters when the cancel is lost (then the crawl hangs, unwaited)
            await asyncio.wait_for(asyncio.shield(task), 120)
        fetched = [h.path for h in site.hits if h.path.startswith("/p")]
    assert fired and len(fetched) < 20
