"""The ceiling of any aiohttp crawler here: GET every URL of a known list (one per line in the
file given as argv[1]) with N workers, reading each body, and nothing else."""

from __future__ import annotations

import asyncio
import sys

import aiohttp


async def main(path: str, concurrency: int, per_host: int) -> None:
    """Fetch every URL in *path* once."""
    urls = open(path, encoding="utf-8").read().split()
    queue = iter(urls)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=per_host)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            for url in queue:
                async with session.get(url, allow_redirects=False) as resp:
                    await resp.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
