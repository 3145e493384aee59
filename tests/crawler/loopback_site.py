"""A small multi-host loopback site for the engine's end-to-end tests (until fixtures.site lands).

Each host is a distinct 127.0.2.x address on one port; `pages` maps (host index, path) to a
response; every request is recorded with its arrival time and the in-flight count of its host.
A test can hold requests (`Running.hold_when`) to stop a crawl at a point of its choosing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Page:
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/html"
    times: int = 0  # answered so far (for "first a 429, then a 200")
    then: Page | None = None  # the answer after the first one
    raw: bytes | None = None  # the body's exact bytes (e.g. gzip with Content-Encoding), if set


@dataclass
class Hit:
    t: float
    host: str
    path: str
    in_flight: int
    conditional: str | None = None  # If-None-Match or If-Modified-Since, when the request had one


@dataclass
class Running:
    port: int
    hosts: list[str]
    hits: list[Hit]
    # While hold_when() is true, each new request is recorded, then held (in flight, unanswered)
    # until `released` is set: a crawl cannot get past that point however fast it runs. When
    # hold_when() is called, hits[-1] is the request being decided (to hold only some requests).
    hold_when: Callable[[], bool] | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, i: int, path: str) -> str:
        return f"http://{self.hosts[i]}:{self.port}{path}"


def links(*hrefs: str) -> str:
    return "<html><body>" + "".join(f'<a href="{h}">x</a>' for h in hrefs) + "</body></html>"


@asynccontextmanager
async def serve(pages: dict[tuple[int, str], Page], hosts: int = 3) -> AsyncIterator[Running]:
    names = [f"127.0.2.{i + 1}" for i in range(hosts)]
    hits: list[Hit] = []
    in_flight = dict.fromkeys(names, 0)

    async def handle(request: web.Request) -> web.StreamResponse:
        host = request.host.rsplit(":", 1)[0]
        in_flight[host] += 1
        asked = request.headers.get("If-None-Match") or request.headers.get("If-Modified-Since")
        hits.append(Hit(time.monotonic(), host, request.path_qs, in_flight[host], asked))
        try:
            if running.hold_when is not None and running.hold_when():
                await running.released.wait()
            page = pages.get((names.index(host), request.path_qs))
            if page is None:
                return web.Response(status=404, text="no")
            answer = page.then if page.times and page.then is not None else page
            page.times += 1
            validators = (answer.headers.get("ETag"), answer.headers.get("Last-Modified"))
            if asked is not None and asked in validators:  # RFC 9110 §13.1: not modified
                return web.Response(status=304, headers=answer.headers)
            await asyncio.sleep(0)
            if answer.raw is not None:
                return web.Response(status=answer.status, body=answer.raw, headers=answer.headers,
                                    content_type=answer.content_type)
            return web.Response(status=answer.status, text=answer.body, headers=answer.headers,
                                content_type=answer.content_type)
        finally:
            in_flight[host] -= 1

    for attempt in range(5):  # the free port of the first address may be taken on another one
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, names[0], 0).start()
            port = runner.addresses[0][1]
            for name in names[1:]:
                await web.TCPSite(runner, name, port).start()
        except OSError:
            await runner.cleanup()
            if attempt == 4:
                raise
            continue
        break
    running = Running(port, names, hits)
    try:
        yield running
    finally:
        running.released.set()
        await runner.cleanup()
