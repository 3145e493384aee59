"""Instructions per exchange of the crawler's WARC writer, counted by valgrind's callgrind.

CPU time on this shared 2-core machine moves by ±10% between runs; an instruction count repeats
to about 1%, so a change to crawler/warc.py or crawler/warc_records.py can be measured before
the whole-crawl bench (bench/crawler/cpu_per_page.py) sees it. Each count runs this module in a
child under callgrind twice, with and without the writing, so start-up and the building of the
exchanges cancel out: (with - without) / exchanges. Shapes: "throughput" are the pages of
cpu_per_page's throughput site (the fixture generator's plain site, about 1 KB), "mixed" are
warc_costs' 2-20 KB pages with chunked, duplicate and truncated answers. Prints markdown;
`python -m bench.crawler.warc_instructions [--shapes throughput,mixed] [--encoders own,fastwarc,warcio]`.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import subprocess
import sys
import tempfile

from bench.crawler.nginx import ensure_apt
from bench.results import machine_line

EXCHANGES = 2048
FLUSH_EVERY = 256  # as bench/crawler/warc_costs.py: the crawler flushes once per group commit
_COLLECTED = re.compile(r"Collected : (\d+)")


def throughput_exchanges(n: int) -> list[dict]:
    """*n* exchanges of the throughput site's pages, with the heads nginx and the crawler send."""
    from fixtures.site import build_site

    site = build_site(20, 1000, seed=1, features="plain")
    bodies = [(host.address, path, page.body.replace("@PORT@", "8080").encode())
              for host in site.seed_hosts for path, page in host.pages.items()]
    out = []
    for i, (address, path, body) in enumerate(bodies[:n]):
        out.append({
            "url": f"http://{address}:8080{path}", "fetched_at": 1_795_000_000.0 + i / 1000,
            "ip": address, "truncated": False, "payload": body,
            "request_head": (f"GET {path} HTTP/1.1\r\nHost: {address}:8080\r\n"
                             "User-Agent: fanmill/0.1.0\r\nAccept-Encoding: gzip, deflate\r\n"
                             "Accept: */*\r\n\r\n").encode(),
            "response_head": ("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"
                              "Date: Mon, 30 Nov 2026 02:30:00 GMT\r\nContent-Type: text/html\r\n"
                              f"Content-Length: {len(body)}\r\n"
                              "Last-Modified: Mon, 30 Nov 2026 02:20:00 GMT\r\n"
                              f'Connection: keep-alive\r\nETag: "{i:x}-{len(body):x}"\r\n'
                              "Accept-Ranges: bytes\r\n\r\n").encode()})
    return out


def _records_class(encoder: str):
    """The record encoder the writer uses for *encoder* (own, fastwarc, warcio)."""
    if encoder == "own":
        from crawler.warc_records import GzipRecords

        return GzipRecords
    from bench.crawler import warc_costs

    return {"fastwarc": warc_costs.FastWarcRecords, "warcio": warc_costs.WarcioRecords}[encoder]


def child(items_file: str, encoder: str, write: bool) -> None:
    """Under callgrind: load the exchanges and warm a writer, then write them if *write*."""
    from crawler.warc import WarcWriter

    with open(items_file, "rb") as f:
        items = pickle.load(f)  # built outside callgrind: building them is slow under it
    writer_class = type("Writer", (WarcWriter,), {"records_class": _records_class(encoder)})
    with tempfile.TemporaryDirectory() as directory:
        writer = writer_class(directory, info={"software": "fanmill/0.1.0"})
        warm = dict(items[0], url=items[0]["url"] + "?warm", payload=b"warm")
        writer.write_exchange(**warm)  # first use: masks, record ids, deflate tables
        writer.flush()
        if write:
            for i, item in enumerate(items, 1):
                writer.write_exchange(**item)
                if i % FLUSH_EVERY == 0:
                    writer.flush()
        writer.close()


def instructions(argv: list[str], cwd: str | None = None) -> int:
    """Instructions callgrind counts for one run of *argv* (every thread)."""
    env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts in every run
    with tempfile.TemporaryFile("w+") as err:  # valgrind's chatter can be long
        proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                               *argv], cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, env=env,
                              check=False)
        err.seek(0)
        log = err.read()
    found = _COLLECTED.findall(log)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"callgrind run failed ({proc.returncode}): {log[-2000:]}")
    return int(found[-1])


def count(items_file: str, encoder: str, write: bool) -> int:
    """Instructions callgrind counts for one child run."""
    return instructions([sys.executable, "-m", "bench.crawler.warc_instructions", "--child",
                         items_file, encoder, str(int(write))])


def main(argv: list[str]) -> str:
    """Count every shape x encoder; return the markdown table."""
    parser = argparse.ArgumentParser(prog="python -m bench.crawler.warc_instructions",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="throughput,mixed")
    parser.add_argument("--encoders", default="own",
                        help="comma-separated of own, fastwarc, warcio (default own)")
    opts = parser.parse_args(argv)
    ensure_apt("valgrind", "valgrind")
    from bench.crawler.warc_costs import exchanges as mixed_exchanges

    rows = []
    with tempfile.TemporaryDirectory() as work:
        for shape in opts.shapes.split(","):
            items_file = os.path.join(work, shape + ".pickle")
            with open(items_file, "wb") as f:
                pickle.dump((throughput_exchanges if shape == "throughput"
                             else mixed_exchanges)(EXCHANGES), f)
            for encoder in opts.encoders.split(","):
                print(f"warc_instructions: {shape} {encoder}", file=sys.stderr, flush=True)
                base = count(items_file, encoder, False)
                full = count(items_file, encoder, True)
                rows.append(f"| {shape} | {encoder} | {(full - base) / EXCHANGES:,.0f} |")
    return "\n".join([
        "### WARC writing: instructions per exchange (callgrind)", "", machine_line(), "",
        f"{EXCHANGES} exchanges through crawler.warc.WarcWriter with the given record encoder, "
        f"a flush every {FLUSH_EVERY}; (instructions with the writing - without) / exchanges.", "",
        "| pages | record encoder | instructions / exchange |", "|---|---|---:|", *rows])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], sys.argv[4] == "1")
    else:
        print(main(sys.argv[1:]))
