"""The ceiling of any aiohttp crawler here: GET every URL of a known list (one per line in the
file given as argv[1]) with N workers, reading each body, and nothing else.

With a fourth argument `links`, each HTML body is also decoded, hashed (SHA-256) and its links
extracted and normalized with the crawler's own code: the floor of a crawler that reads links,
before any frontier, politeness, state or output."""

from __future__ import annotations

import asyncio
import hashlib
import sys

import aiohttp


async def main(path: str, concurrency: int, per_host: int, links: bool) -> None:
    """Fetch every URL in *path* once."""
    if links:
        from crawler.links import extract_links
    urls = open(path, encoding="utf-8").read().split()
    queue = iter(urls)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=per_host)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            for url in queue:
                async with session.get(url, allow_redirects=False) as resp:
                    body = await resp.read()
                    if links and "html" in resp.headers.get("Content-Type", ""):
                        hashlib.sha256(body).digest()
                        extract_links(body.decode("utf-8", "replace"), url)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                     len(sys.argv) > 4 and sys.argv[4] == "links"))
