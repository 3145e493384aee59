"""Child of the WARC kill -9 test: `python -m tests.crawler.warc_child DIR SEED BOUND`.

Writes exchanges 0, 1, ... BOUND-1 (payloads derived from SEED, some large), flushes after each
and prints "ack N BYTES" once exchange N is flushed (BYTES: the size of DIR's files then); then
blocks reading stdin, so the parent's kill always finds it alive."""

from __future__ import annotations

import os
import random
import sys

from crawler.warc import WarcWriter


def payload(seed: int, i: int) -> bytes:
    """The payload of exchange *i*: distinct per exchange, 100 bytes to 8 KB of text, or (one in
    three) up to 400 KB that gzip cannot shrink, so that a record reaches the OS in several
    writes and a kill can land between them, leaving a torn member."""
    rng = random.Random(seed * 1_000_003 + i)
    if i % 3 == 1:
        return rng.randbytes(rng.randrange(100_000, 400_000))
    line = f"<p>seed {seed} exchange {i}</p>\n".encode()
    size = rng.randrange(100, 8_000)
    return (line * (size // len(line) + 1))[:size]


def dir_bytes(directory: str) -> int:
    """The bytes the files of *directory* hold."""
    return sum(entry.stat().st_size for entry in os.scandir(directory))


def main(directory: str, seed: int, bound: int) -> None:
    """Write, flush and acknowledge *bound* exchanges, then wait to be killed."""
    writer = WarcWriter(directory, max_size=200_000, info={"software": "warc_child"})
    for i in range(bound):
        body = payload(seed, i)
        writer.write_exchange(
            url=f"http://127.0.0.1:8080/p{i}", fetched_at=1_800_000_000.0 + i, ip="127.0.0.1",
            request_head=f"GET /p{i} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".encode(),
            response_head=b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body),
            payload=body, truncated=False)
        writer.flush()
        print(f"ack {i} {dir_bytes(directory)}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
