"""Instructions per page of a whole crawl of the throughput site, plain and with `--warc`.

cpu_per_page's figure for `--warc` is CPU time, and on this machine CPU time per page rises by
more than the work added (bench/crawler/loop_burden.py: even a sleep raises it). An instruction
count is the work itself: each contender crawls cpu_per_page's throughput site (nginx, 20 hosts x
1,000 pages, the same limits) once under valgrind's callgrind, whose count repeats from run to
run, every thread of the crawler counted. Start-up is in both counts (the same instructions) and
is left in, so the ratio slightly understates the per-page rise. valgrind runs no AVX-512 or SHA
instructions, so OpenSSL's SHA-1 and ISA-L's deflate take their slower generic paths under it:
the `--warc` count is higher than the same work natively. About 10 minutes.
`python -m bench.crawler.crawl_instructions`; writes section crawler-warc-work of bench/RESULTS.md.
"""

from __future__ import annotations

import shutil
import sys

from bench.crawler.cpu_per_page_measure import HOSTS, LIMITS, PY, ROOT, WORK, write_plain_site
from bench.crawler.nginx import ensure_apt, free_port, serve
from bench.crawler.warc_instructions import instructions
from bench.results import machine_line, write_section


def count(seeds: list[str], warc: bool) -> tuple[int, int]:
    """(instructions, pages recorded) of one crawl of *seeds* under callgrind."""
    work = WORK / "crawl-instructions"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    args = [PY, "-m", "crawler", *seeds, *LIMITS, "--state", str(work / "s.db"),
            "--out", str(work / "out.jsonl"), "-q"]
    if warc:
        args += ["--warc", str(work / "warc")]
    return instructions(args, cwd=str(ROOT)), (work / "out.jsonl").read_text().count("\n")


def main() -> str:
    """Count both crawls; return the markdown."""
    ensure_apt("valgrind", "valgrind")
    port = free_port([f"127.0.1.{i + 1}" for i in range(HOSTS)])
    roots, target = write_plain_site(port)
    got = {}
    with serve(WORK / "nginx", roots, port):
        for warc in (False, True):
            counted, pages = count(target.seeds, warc)
            if pages != len(target.expected):
                raise RuntimeError(f"the crawl recorded {pages} pages, not {len(target.expected)}")
            got[warc] = counted / pages
    return "\n".join([
        "## crawler-warc-work — what `--warc` adds to a crawl, in instructions (issue 14)", "",
        f"`python -m bench.crawler.crawl_instructions` · {machine_line()}", "",
        f"Throughput site, {len(target.expected):,} pages, every thread of the crawler, "
        "start-up included.", "",
        "| contender | instructions a page |", "|---|---:|",
        f"| crawl | {got[False]:,.0f} |", f"| crawl --warc | {got[True]:,.0f} |", "",
        f"`--warc` adds {got[True] - got[False]:,.0f} instructions a page: "
        f"{got[True] / got[False] - 1:+.1%} of the crawl's. The CPU time figure (section "
        "crawler-nginx) is higher: see section crawler-loop-burden."])


if __name__ == "__main__":
    if sys.argv[1:]:
        raise SystemExit(__doc__)
    markdown = main()
    write_section("crawler-warc-work", markdown)
    print(markdown)
