"""The markdown of cpu_per_page: per-site tables, target verdicts, the RESULTS.md section."""

from __future__ import annotations

import statistics
import sys
from collections import Counter
from importlib.metadata import version as version_of
from pathlib import Path

from bench.crawler.cpu_per_page_measure import (
    CRAWL,
    HANDLER,
    HANDLER_SPEC,
    HOSTS,
    LOOP,
    PAGES,
    QUICK,
    WARC_FAST,
    WARC_WARCIO,
    Run,
    Target,
)
from bench.results import machine_line


def table(target: Target, runs: dict[str, list[Run]]) -> tuple[list[str], dict[str, dict]]:
    """Markdown rows of one target and the medians behind them."""
    loop = runs[LOOP]
    crawl = runs[CRAWL]
    rows = ["| contender | median wall s | useful pages/s | × loop (pages/s) | client CPU µs "
            "per page | × loop (CPU per page) | × crawl (CPU per page) | nginx CPU µs per "
            "request | pages (last round) | check (every round) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    medians: dict[str, dict] = {}
    for name in runs:
        rs = runs[name]
        m = {
            "wall": statistics.median(x.wall for x in rs),
            "rate": statistics.median(x.rate for x in rs),
            "x_rate": statistics.median(x.rate / lp.rate for x, lp in zip(rs, loop, strict=True)),
            "cpu": statistics.median(x.cpu_us for x in rs),
            "x_cpu": statistics.median(x.cpu_us / lp.cpu_us for x, lp in zip(rs, loop, strict=True)),
            "x_crawl": statistics.median(x.cpu_us / c.cpu_us for x, c in zip(rs, crawl, strict=True)),
            # the spread of the rounds: on a shared machine one round can move by a quarter
            "x_crawl_rounds": sorted(x.cpu_us / c.cpu_us for x, c in zip(rs, crawl, strict=True)),
            "nginx": statistics.median(x.nginx_us for x in rs),
        }
        medians[name] = m
        checks = sorted({x.check for x in rs})
        rows.append(f"| {name} | {m['wall']:.2f} | {m['rate']:,.0f} | {m['x_rate']:.2f} | "
                    f"{m['cpu']:,.0f} | {m['x_cpu']:.2f} | {m['x_crawl']:.2f} | {m['nginx']:,.0f} | "
                    f"{rs[-1].useful:,} | {' / '.join(checks)} |")
    return rows, medians


def markdown(*, command_line: str, nginx_version: str, n_rounds: int, targets: list[Target],
             runs: dict[str, dict[str, list[Run]]], docs: Path | None, docs_urls: list[str],
             statuses: Counter[str], fixed: str, warc_checks: list[str], nginx_log: str,
             server_core: int | None = None) -> str:
    """The "crawler-nginx" section of bench/RESULTS.md from the measured *runs*."""
    sections = []
    verdicts = []
    for target in targets:
        rows, med = table(target, runs[target.name])
        title = (f"**throughput site** — the fixture generator's plain site, {HOSTS} hosts × "
                 f"{PAGES:,} pages (+ robots.txt), static files"
                 if target.name == "throughput" else
                 f"**python3-doc** — Debian's Python {sys.version_info.major}."
                 f"{sys.version_info.minor} documentation ({docs}), one host, crawled from "
                 f"index.html: the warm-up crawl recorded {len(docs_urls):,} URLs (statuses "
                 f"{', '.join(f'{k} ×{v}' for k, v in sorted(statuses.items()))}); the loop "
                 "fetches that list")
        sections.append(title + "\n\n" + "\n".join(rows))
        c = med[CRAWL]

        extra = [f"{label} adds {med[name]['x_crawl'] - 1:+.0%}"
                 + (f" (rounds {med[name]['x_crawl_rounds'][0] - 1:+.0%} to "
                    f"{med[name]['x_crawl_rounds'][-1] - 1:+.0%})"
                    if len(med[name]["x_crawl_rounds"]) > 1 else "")
                 for name, label in ((WARC_FAST, "`--warc` with the crawler's own encoder"),
                                     (WARC_WARCIO, "`--warc` with warcio's encoder"),
                                     (HANDLER, "the title handler + `--items`")) if name in med]
        extra = [x + " CPU per page" for x in extra]
        if WARC_FAST in med and target.name == "throughput":
            extra[0] += (" (issue 14: ≤ +15% here: "
                         + ("met" if med[WARC_FAST]["x_crawl"] <= 1.15 else "**not met**") + ")")
        verdicts.append(
            f"- {target.name}: `crawl` CPU per page {c['x_cpu']:.2f}× the loop's (target ≤ 1.3×: "
            f"{'met' if c['x_cpu'] <= 1.3 else '**not met**'}), pages/s {c['x_rate']:.2f}× the "
            f"loop's (target ≥ 0.8×: {'met' if c['x_rate'] >= 0.8 else '**not met**'})"
            + "".join("; " + x for x in extra))
    return "\n\n".join([
        "## crawler-nginx — client and server CPU per page, sites served by nginx "
        "(issues 14 and 15)",
        machine_line(),
        f"Command: `{command_line}`{' with FANMILL_BENCH_QUICK=1 (quick mode)' if QUICK else ''}. "
        "**The machine has 2 cores and is shared** (other engineers run tests at the same time): "
        "compare the ratios within this run, not absolute figures across runs. "
        f"nginx {nginx_version} (private instance, 1 worker, access_log off, sendfile, "
        "one 127.0.1.x address per host, "
        + ("not pinned" if server_core is None else
           f"kept on CPU {server_core} as a remote server keeps to its machine: the contenders are "
           "not pinned; see server_core() in bench/crawler/nginx.py") +
        f"), aiohttp {version_of('aiohttp')} (the loop; the crawler's http:// "
        f"goes through its own client on httptools {version_of('httptools')}), isal "
        f"{version_of('isal')} (the crawler's WARC deflate), FastWARC {version_of('fastwarc')} "
        f"and warcio {version_of('warcio')} (read-back checks). Every contender "
        f"is its own process; {n_rounds} round(s), the order rotated each round; ratios are taken "
        "within a round, then the median. All with `--delay 0 --per-host 16 --concurrency 128` "
        "(the loop: 128 workers, 16 per host). `crawl` has every default on: SQLite `--state`, "
        "`--out` JSONL, content hash, SimHash; the `--warc` and `--handler` rows add to that. "
        "Wall = spawn to exit. Client CPU = user + system of the process and its children "
        "(os.wait4), per useful (2xx) page; nginx CPU = master + worker from "
        "/proc/<pid>/schedstat (ns on CPU), per request "
        "(robots.txt included). The check column compares each crawl's JSONL with the expected "
        "URL set (throughput: the generator's truth; python3-doc: the warm-up crawl) and nginx's "
        "request count (stub_status) with records + robots.txt. The handler "
        f"({HANDLER_SPEC}) returns one item per page: URL and <title>.",
        *sections,
        fixed,
        *(["WARC read-back (the last round's files):\n" + "\n".join(warc_checks)]
          if warc_checks else []),
        "Targets:\n" + "\n".join(verdicts),
        *([f"nginx error log:\n\n```\n{nginx_log[-1500:]}\n```"] if nginx_log else []),
    ])
