"""The ceiling of any aiohttp crawler here: GET every URL of a known list (one per line in the
file given as argv[1]) with N workers, reading each body, and nothing else.

With a fourth argument `links`, each HTML body is also decoded, hashed (SHA-256) and its links
extracted and normalized with the crawler's own code: the floor of a crawler that reads links,
before any frontier, politeness, state or output. With `regex`, each HTML body is decoded and its
hrefs found with one regex and resolved with urllib.parse.urljoin (issue 15's "plain loop").

On exit it prints one line: `fetched N ok M bytes B links L` (ok: 2xx answers)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
from urllib.parse import urljoin

import aiohttp

HREF = re.compile(r"""<a\s[^>]*?href\s*=\s*["']?([^"'\s>]+)""", re.I)


async def main(path: str, concurrency: int, per_host: int, mode: str) -> None:
    """Fetch every URL in *path* once."""
    if mode == "links":
        from crawler.links import extract_links
    urls = open(path, encoding="utf-8").read().split()
    queue = iter(urls)
    counts = {"fetched": 0, "ok": 0, "bytes": 0, "links": 0}
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=per_host)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            for url in queue:
                async with session.get(url, allow_redirects=False) as resp:
                    body = await resp.read()
                    counts["fetched"] += 1
                    counts["ok"] += 200 <= resp.status < 300
                    counts["bytes"] += len(body)
                    if mode and "html" in resp.headers.get("Content-Type", ""):
                        if mode == "links":
                            hashlib.sha256(body).digest()
                            extract_links(body.decode("utf-8", "replace"), url)
                        else:
                            found = [urljoin(url, h) for h in
                                     HREF.findall(body.decode("utf-8", "replace"))]
                            counts["links"] += len(found)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(" ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                     sys.argv[4] if len(sys.argv) > 4 else ""))
