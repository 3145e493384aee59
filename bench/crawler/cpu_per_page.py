"""Client and server CPU per page, crawling sites served by nginx (issues 14 and 15).

`python -m bench.crawler.cpu_per_page` (also run by `make bench-crawler`). A private nginx
(bench/crawler/nginx.py; nginx-light installed with apt when missing) serves, as static files:

- the throughput site: the fixture generator's "plain" site, 20 hosts x 1,000 pages (robots.txt
  included), written to disk under bench/.work/crawler-nginx/, one 127.0.1.x address per host;
- real HTML: Debian's python3-doc (installed with apt when missing) on one host, crawled from
  its index page;
- a host whose robots.txt disallows everything: start-up and shutdown cost alone.

Contenders, each its own process, alternating order over rounds (median of 3; QUICK: 1 round
on 4 x 100 pages): the plain aiohttp loop (bench/crawler/aiohttp_loop.py `regex`: regex hrefs +
urljoin over the known URL list, the same per-host limit), `crawl` with every default on (SQLite
state, JSONL, content hash, SimHash), `crawl --warc` with the crawler's own encoder
(crawler/warc_records.py, ISA-L deflate) and with warcio's encoder swapped in (bench/crawler/crawl_warcio.py), and `crawl --handler --items` with a
title-collecting handler. Client CPU is the contender's own rusage (os.wait4, children
included), nginx CPU is /proc/<pid>/schedstat of master + worker, requests counted by
stub_status. nginx runs on the last CPU only (`--server-cpu`; see server_core() in nginx.py: left
to the scheduler, the server and the client chase each other over the two cores, and the
client's CPU per page then rises with anything that changes its timing).
Every crawl is checked: the throughput site fetched every page once (its JSONL against the
generator's truth, and nginx's request count), python3-doc's URL set equal across crawls and to
the loop's list, and each WARC read back with warcio and FastWARC, digests verified.

This module is the command line and the run order; cpu_per_page_measure.py measures and checks
one run, cpu_per_page_report.py writes the markdown.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections import Counter

from bench.crawler.cpu_per_page_measure import (
    CONTENDERS,
    CRAWL,
    DOCS_ADDRESS,
    EMPTY_ADDRESS,
    HANDLER,
    HOSTS,
    LOOP,
    ROUNDS,
    WARC_FAST,
    WARC_WARCIO,
    WORK,
    Target,
    check_warc,
    docs_root,
    output_paths,
    profile,
    rounds,
    run_once,
    startup,
    write_plain_site,
)
from bench.crawler.cpu_per_page_report import markdown
from bench.crawler.nginx import free_port, parse_cpu, serve, server_core
from bench.results import write_section

SHORT = {"loop": LOOP, "crawl": CRAWL, "warc": WARC_FAST, "warcio": WARC_WARCIO,
         "handler": HANDLER}


def _options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.crawler.cpu_per_page",
        description="Client and server CPU per page against nginx. With no option: everything, "
                    "written to bench/RESULTS.md; a subset (or --profile) only prints.")
    parser.add_argument("--sites", default="throughput,docs",
                        help="comma-separated: throughput, docs (default both)")
    parser.add_argument("--contenders", default=",".join(SHORT),
                        help="comma-separated of " + ", ".join(SHORT) + " (loop and crawl are "
                             "always run: the ratios need them)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"default {ROUNDS}")
    parser.add_argument("--server-cpu", type=parse_cpu, default=server_core(), metavar="N|none",
                        help="the CPU nginx is kept on (default the last: "
                             f"{server_core()}); none: wherever the scheduler puts it")
    parser.add_argument("--profile", choices=[k for k in SHORT if k != "loop"],
                        help="instead: one in-process crawl of each selected site under cProfile "
                             "(top 30 by own time)")
    return parser.parse_args(argv)


def main(command_line: str = "python -m bench.crawler.cpu_per_page",
         argv: list[str] | None = None) -> str:
    """Run the benchmark; with every site and contender (the default), write the
    "crawler-nginx" section of bench/RESULTS.md. Return the markdown."""
    opts = _options(argv or [])
    sites = [x.strip() for x in opts.sites.split(",") if x.strip()]
    picked = {SHORT[x.strip()] for x in opts.contenders.split(",") if x.strip()} | {LOOP, CRAWL}
    contenders = [c for c in CONTENDERS if c in picked]
    complete = (not opts.profile and set(sites) == {"throughput", "docs"}
                and contenders == CONTENDERS)
    n_rounds = opts.rounds
    WORK.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C: the running contender is killed and nginx stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    docs = docs_root() if "docs" in sites else None

    port = free_port([f"127.0.1.{i + 1}" for i in range(HOSTS)] + [DOCS_ADDRESS, EMPTY_ADDRESS])
    roots, throughput = write_plain_site(port)
    empty_root = WORK / "empty"
    empty_root.mkdir(exist_ok=True)
    (empty_root / "robots.txt").write_text("User-agent: *\nDisallow: /\n")
    roots[EMPTY_ADDRESS] = empty_root
    if docs is not None:
        roots[DOCS_ADDRESS] = docs
    docs_urls: list[str] = []
    statuses: Counter[str] = Counter()
    with serve(WORK / "nginx", roots, port, cpu=opts.server_cpu) as nginx:
        version = subprocess.run([shutil.which("nginx") or "nginx", "-v"], capture_output=True,
                                 text=True).stderr.strip().split("/")[-1]
        targets = [throughput] if "throughput" in sites else []
        if docs is not None:
            # the warm-up crawl (not measured) gives the URL list the loop fetches there
            print("cpu_per_page: docs warm-up crawl", file=sys.stderr)
            seed = f"http://{DOCS_ADDRESS}:{port}/index.html"
            probe = Target("docs", [seed], WORK / "docs-urls.txt", frozenset(), 1)
            warm = run_once(CRAWL, probe, nginx, kind="warmup-crawl")
            docs_urls = [r["url"] for r in warm.records]
            probe.urls_file.write_text("\n".join(docs_urls) + "\n")
            statuses = Counter(str(r["status"]) for r in warm.records)
            targets.append(Target("docs", [seed], probe.urls_file, frozenset(docs_urls), 1))
        if opts.profile:
            return "\n\n".join(profile(SHORT[opts.profile], t) for t in targets)
        if "throughput" in sites:  # warm-up (not measured): page cache, nginx, connections
            print("cpu_per_page: throughput warm-up loop", file=sys.stderr)
            run_once(LOOP, throughput, nginx, kind="warmup-loop")
        runs = rounds(targets, nginx, contenders, n_rounds)
        fixed = startup(nginx, n_rounds)
        warc_checks = []
        for target in targets:
            exchanges = len(runs[target.name][CRAWL][-1].records) + target.robots
            for contender in (WARC_FAST, WARC_WARCIO):
                if contender not in contenders:
                    continue
                kind = contender.split()[0] + str(CONTENDERS.index(contender))
                print(f"cpu_per_page: reading back {target.name} {contender}", file=sys.stderr)
                warc_checks.append(f"- {target.name}, {contender}: "
                                   + check_warc(output_paths(kind, target)["warc"], exchanges))
        nginx_log = (nginx.prefix / "error.log").read_text(errors="replace").strip()

    md = markdown(command_line=command_line, nginx_version=version, n_rounds=n_rounds,
                  targets=targets, runs=runs, docs=docs, docs_urls=docs_urls, statuses=statuses,
                  fixed=fixed, warc_checks=warc_checks, nginx_log=nginx_log,
                  server_core=opts.server_cpu)
    if complete:
        write_section("crawler-nginx", md)
    else:
        print("a subset: bench/RESULTS.md left as it is", file=sys.stderr)
    return md


if __name__ == "__main__":
    print(main(" ".join(["python -m bench.crawler.cpu_per_page", *sys.argv[1:]]), sys.argv[1:]))
