"""`make bench-crawler`: fanmill's crawler against a minimal Scrapy spider and a plain aiohttp loop,
on the fixture site served from its own process, every crawl scored from the server's request log.

Scenarios, in one run: throughput (20 hosts x 1,000 pages, no delay), politeness-bound efficiency
(20 x 50 pages, 0.1 s delay, one request per host), correctness on the full-featured site (robots
variants, a 0.25 s Crawl-delay, redirects, traps, ...), the 20k -> 200k scale run (issue 6), a
profile of the crawler, and client + server CPU per page against nginx (bench/crawler/cpu_per_page.py,
its own section). FANMILL_BENCH_QUICK=1 shrinks every site for a smoke run.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import random
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.crawler.cpu_per_page import main as cpu_per_page
from bench.crawler.page_costs import main as page_costs
from bench.crawler.score import Score, score
from bench.crawler.seen_index import measure as measure_seen_index
from bench.crawler.site_process import start_site
from bench.results import machine_line, write_section
from fixtures.site import Site, build_site

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / ".work" / "crawler"
QUICK = os.environ.get("FANMILL_BENCH_QUICK") == "1"
SCRAPY_VENV = ROOT / "bench" / ".venv-scrapy"
PY = sys.executable
ROUNDS = 1 if QUICK else 3
CONCURRENCY, PER_HOST = 64, 4  # throughput: the same limits for every contender
LOOP_LINKS = "aiohttp loop + links"  # the loop that also hashes and extracts links (the floor)
LATENCY = 0.002  # throughput: seconds the server holds each answer (see crawl_once)


@dataclass
class Run:
    """One contender's crawl: wall seconds (spawn to exit), peak RSS, and its score."""

    name: str
    wall: float
    rss_mib: float
    score: Score
    cpu: float = 0.0  # the contender's CPU seconds (user + system, its children included)
    server_cpu: float = 0.0  # the fixture server's CPU seconds during the crawl


def ensure_scrapy() -> Path | None:
    """bench/.venv-scrapy/bin/scrapy, installed on first use (None, with a warning, on failure)."""
    scrapy = SCRAPY_VENV / "bin" / "scrapy"
    if not scrapy.exists():
        print("installing Scrapy into bench/.venv-scrapy ...", file=sys.stderr)
        try:
            subprocess.run([PY, "-m", "venv", str(SCRAPY_VENV)], check=True)
            subprocess.run([str(SCRAPY_VENV / "bin" / "pip"), "install", "--quiet", "scrapy"],
                           check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"warning: Scrapy could not be installed ({exc}); it is left out", file=sys.stderr)
            return None
    return scrapy


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) process *pid* has used so far (Linux /proc)."""
    try:
        fields = open(f"/proc/{pid}/stat", encoding="ascii").read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run *cmd*; wall seconds and peak RSS in MiB (GNU time, when installed)."""
    rss_file = WORK / "rss.txt"
    wrapped = (["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd]
               if os.path.exists("/usr/bin/time") else cmd)
    started = time.perf_counter()
    done = subprocess.run(wrapped, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=1800)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 3):
        raise RuntimeError(f"{cmd[:4]} exited {done.returncode}: {done.stderr[-2000:]}")
    rss = float(rss_file.read_text().split()[-1]) / 1024 if wrapped is not cmd else float("nan")
    return wall, rss


def command(name: str, seeds: list[str], delay: float, per_host: int, concurrency: int,
            urls_file: Path, scrapy: Path | None, run_id: int) -> list[str]:
    """The command line of one contender."""
    if name == "fanmill crawl":
        state, out = WORK / f"state-{run_id}.db", WORK / f"out-{run_id}.jsonl"
        for p in WORK.glob(f"state-{run_id}.db*"):
            p.unlink()
        out.unlink(missing_ok=True)
        return [PY, "-m", "crawler", *seeds, "--delay", str(delay), "--per-host", str(per_host),
                "--concurrency", str(concurrency), "--state", str(state), "--out", str(out), "-q"]
    if name == "Scrapy":
        hosts = ",".join(sorted({s.split("/")[2].split(":")[0] for s in seeds}))
        return [str(scrapy), "runspider", str(ROOT / "bench" / "crawler" / "scrapy_spider.py"),
                "-a", "seeds=" + ",".join(seeds), "-a", "hosts=" + hosts,
                "-s", "ROBOTSTXT_OBEY=True", "-s", f"CONCURRENT_REQUESTS={concurrency}",
                "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={per_host}", "-s", f"DOWNLOAD_DELAY={delay}",
                "-s", "RANDOMIZE_DOWNLOAD_DELAY=False", "-s", "LOG_LEVEL=ERROR",
                "-s", "TELNETCONSOLE_ENABLED=False", "-s", "USER_AGENT=fanmill"]
    return [PY, str(ROOT / "bench" / "crawler" / "aiohttp_loop.py"), str(urls_file),
            str(concurrency), str(per_host), *(["links"] if name == LOOP_LINKS else [])]


_SITES: dict[tuple, Site] = {}


def crawl_once(name: str, site_kw: dict, delay: float, per_host: int, concurrency: int,
               scrapy: Path | None, run_id: int, latency: float = 0.0) -> Run:
    """Serve a fresh site, run one contender against it, score it from the server's log;
    *latency* holds every answer that long, so the log can show requests overlapping."""
    key = tuple(sorted(site_kw.items()))
    site = _SITES.get(key) or _SITES.setdefault(key, build_site(**site_kw))
    server = start_site(WORK, hosts=site_kw["hosts"], pages=site_kw["pages_per_host"],
                        seed=site_kw["seed"], features=site_kw["features"],
                        crawl_delay=site_kw.get("crawl_delay", 0.1), latency=latency)
    try:
        truth = site.truth(server.port, seeds=server.seeds, user_agent="fanmill")
        urls = sorted(truth.must_fetch)
        random.Random(1).shuffle(urls)  # the loop spreads over hosts as a crawl does
        urls_file = WORK / "urls.txt"
        urls_file.write_text("\n".join(urls) + "\n")
        cmd = command(name, server.seeds, delay, per_host, concurrency, urls_file, scrapy, run_id)
        server_cpu, cpu = _cpu_of(server.proc.pid), _children_cpu()
        wall, rss = timed(cmd)
        server_cpu, cpu = _cpu_of(server.proc.pid) - server_cpu, _children_cpu() - cpu
    finally:
        requests = server.stop()
    hosts = {s.split("/")[2].split(":")[0] for s in server.seeds}
    return Run(name, wall, rss, score(requests, truth, server.port, hosts, delay), cpu, server_cpu)


def _fmt_counts(s: Score) -> str:
    return (f"{s.missed} | {s.disallowed} | {s.out_of_scope} | {s.duplicates} | "
            f"{s.robots_min}–{s.robots_max} | {s.max_in_flight}")


def throughput(contenders: list[str], scrapy: Path | None) -> tuple[str, dict[str, float]]:
    """Rounds of every contender on the 20 x 1,000 plain site; useful pages/s and ratios."""
    pages = 150 if QUICK else 1000
    site_kw = {"hosts": 20, "pages_per_host": pages, "seed": 1, "features": "plain"}
    runs: dict[str, list[Run]] = {c: [] for c in contenders}
    ratios: dict[str, list[float]] = {c: [] for c in contenders}
    for r in range(ROUNDS):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        this: dict[str, Run] = {}
        for name in order:
            print(f"throughput round {r + 1}/{ROUNDS}: {name}", file=sys.stderr)
            this[name] = crawl_once(name, site_kw, 0.0, PER_HOST, CONCURRENCY, scrapy, r,
                                    latency=LATENCY)
            runs[name].append(this[name])
        ceiling = this["aiohttp loop"].score.useful / this["aiohttp loop"].wall
        for name, run in this.items():
            ratios[name].append(run.score.useful / run.wall / ceiling)
    lines = [f"**throughput** — 20 hosts × {pages:,} pages (plain site), no delay, "
             f"{CONCURRENCY} requests in flight, {PER_HOST} per host; the server holds every "
             f"answer {LATENCY * 1000:g} ms, so its log shows requests to one host overlapping; "
             f"{ROUNDS} rounds, order rotated; wall = spawn to exit; the ratio is taken within "
             "each round, then the median.",
             "", "| contender | median wall s | useful pages/s | × aiohttp loop | CPU µs per page | "
             "server CPU µs per page | peak RSS MiB | missed | disallowed | out of scope | "
             "duplicate fetches | robots.txt per host | max in flight per host |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    medians, cpus = {}, {}
    for name in contenders:
        rs = runs[name]
        wall = statistics.median(x.wall for x in rs)
        rate = statistics.median(x.score.useful / x.wall for x in rs)
        medians[name] = statistics.median(ratios[name])
        cpu = statistics.median(x.cpu / max(1, x.score.useful) for x in rs) * 1e6
        server_cpu = statistics.median(x.server_cpu / max(1, x.score.requests) for x in rs) * 1e6
        lines.append(f"| {name} | {wall:.2f} | {rate:,.0f} | {medians[name]:.2f}× | {cpu:,.0f} | "
                     f"{server_cpu:,.0f} | {max(x.rss_mib for x in rs):.0f} | "
                     f"{_fmt_counts(rs[-1].score)} |")
        cpus[name] = cpu
    loop = runs["aiohttp loop"]
    busy = statistics.median(x.cpu / x.wall for x in loop)
    served = statistics.median(x.server_cpu / x.wall for x in loop)
    lines.append(
        f"\nThe aiohttp loop keeps {busy:.0%} of one core busy for its whole run, and the server "
        f"{served:.0%} of the other: the loop is CPU-bound on the client side, so every microsecond a "
        "crawler adds per page lengthens its wall time. A crawler's ratio to the loop is close to "
        "loop CPU per page / its CPU per page (which counts start-up and helper threads too): "
        + ", ".join(f"{n} {cpus['aiohttp loop'] / cpus[n]:.2f}×" for n in contenders
                    if n != "aiohttp loop") + ".")
    return "\n".join(lines), medians


def politeness(contenders: list[str], scrapy: Path | None) -> tuple[str, float]:
    """20 hosts x 50 pages, 0.1 s delay, one request per host: actual / ideal."""
    pages, delay = (20 if QUICK else 50), 0.1
    site_kw = {"hosts": 20, "pages_per_host": pages, "seed": 2, "features": "plain"}
    ideal = pages * delay
    lines = [f"**politeness-bound efficiency** — 20 hosts × {pages} pages, delay {delay} s, one "
             f"request per host in flight; ideal = pages × delay = {ideal:.1f} s. The server span is "
             "first to last request arrival (start-up and shutdown excluded); wall includes them.",
             "", "| contender | wall s | wall / ideal | server span / ideal | smallest gap ms | "
             "gaps < delay − 5 ms | max in flight per host | missed | duplicates |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ours = float("nan")
    for name in contenders:
        if name.startswith("aiohttp loop"):
            continue
        print(f"politeness: {name}", file=sys.stderr)
        run = crawl_once(name, site_kw, delay, 1, CONCURRENCY, scrapy, 100)
        s = run.score
        if name == "fanmill crawl":
            ours = s.span / ideal
        lines.append(f"| {name} | {run.wall:.2f} | {run.wall / ideal:.2f} | {s.span / ideal:.3f} | "
                     f"{s.min_gap * 1000:.1f} | {s.violations} | {s.max_in_flight} | {s.missed} | "
                     f"{s.duplicates} |")
    return "\n".join(lines), ours


def correctness(contenders: list[str], scrapy: Path | None) -> tuple[str, Score | None]:
    """The full-featured site: every special case, a 0.25 s Crawl-delay, delay 0.05 s."""
    pages = 30 if QUICK else 100
    site_kw = {"hosts": 8, "pages_per_host": pages, "seed": 3, "features": "full",
               "crawl_delay": 0.25}
    lines = [f"**correctness** — full-featured site, 8 hosts × {pages} pages plus the special cases "
             "(robots.txt 404/503/redirect/agent groups, Crawl-delay 0.25 s on one host, redirects, "
             "traps, nofollow, <base>, non-HTML, hostile bodies), delay 0.05 s, one per host.", "",
             "| contender | wall s | useful | missed | disallowed | out of scope | duplicate "
             "fetches | robots.txt per host | max in flight per host | smallest gap ms | "
             "gaps < required − 5 ms |", "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    ours = None
    for name in contenders:
        if name.startswith("aiohttp loop"):
            continue
        print(f"correctness: {name}", file=sys.stderr)
        run = crawl_once(name, site_kw, 0.05, 1, CONCURRENCY, scrapy, 200)
        s = run.score
        ours = s if name == "fanmill crawl" else ours
        lines.append(f"| {name} | {run.wall:.2f} | {s.useful} | {_fmt_counts(s)} | "
                     f"{s.min_gap * 1000:.1f} | {s.violations} |")
    return "\n".join(lines), ours


def scale() -> str:
    """The crawler alone at 20k and 200k URLs (durable state on, no delay): cost per page."""
    sizes = (200, 2000) if QUICK else (1000, 10000)
    rows, per_page = [], []
    for n in sizes:
        print(f"scale: 20 x {n} pages", file=sys.stderr)
        site_kw = {"hosts": 20, "pages_per_host": n, "seed": 4, "features": "plain"}
        run = crawl_once("fanmill crawl", site_kw, 0.0, PER_HOST, CONCURRENCY, None, 300 + n)
        per_page.append(run.wall / max(run.score.useful, 1))
        rows.append(f"| {20 * n:,} | {run.wall:.1f} | {run.score.useful / run.wall:,.0f} | "
                    f"{per_page[-1] * 1e6:,.0f} | {run.rss_mib:.0f} | {run.score.missed} | "
                    f"{run.score.duplicates} |")
    return "\n".join([
        "**scale** (issue 6) — the crawler alone, plain site, no delay, durable state and JSONL on; "
        "one run each.", "", "| URLs | wall s | pages/s | µs per page | peak RSS MiB | missed | "
        "duplicates |", "|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
        f"Cost per page at {20 * sizes[1]:,} URLs / at {20 * sizes[0]:,}: "
        f"{per_page[1] / per_page[0]:.2f}× (1.0 = flat)."])


def profile() -> str:
    """cProfile of one in-process crawl of the throughput site; top entries by own time."""
    from crawler.cli import main as crawl_main

    pages = 150 if QUICK else 1000
    server = start_site(WORK, hosts=20, pages=pages, seed=1, features="plain")
    for p in WORK.glob("state-prof.db*"):
        p.unlink()
    (WORK / "out-prof.jsonl").unlink(missing_ok=True)
    prof = cProfile.Profile()
    try:
        prof.runcall(crawl_main, [*server.seeds, "--delay", "0", "--per-host", str(PER_HOST),
                                  "--concurrency", str(CONCURRENCY), "--state",
                                  str(WORK / "state-prof.db"), "--out", str(WORK / "out-prof.jsonl"),
                                  "-q"])
    finally:
        server.stop()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(14)
    body = text.getvalue()
    start = body.find("   ncalls")
    return ("**profile** of fanmill crawl on the throughput site (cProfile, in-process, top 14 by "
            "own time):\n\n```\n" + body[start:].replace(str(ROOT) + "/", "").rstrip() + "\n```")


def main() -> None:
    """Run every scenario and write the crawler section of bench/RESULTS.md."""
    WORK.mkdir(parents=True, exist_ok=True)
    scrapy = ensure_scrapy()
    contenders = ["fanmill crawl", "aiohttp loop", LOOP_LINKS] + (["Scrapy"] if scrapy else [])
    versions = subprocess.run([str(scrapy), "version"], capture_output=True, text=True
                              ).stdout.strip() if scrapy else "Scrapy not installed"
    import aiohttp

    t_md, t_ratio = throughput(contenders, scrapy)
    p_md, p_ratio = politeness(contenders, scrapy)
    c_md, ours = correctness(contenders, scrapy)
    s_md = scale() + "\n\n" + measure_seen_index()
    prof_md = profile()
    zero = ours is not None and not (ours.missed or ours.disallowed or ours.out_of_scope
                                     or ours.duplicates or ours.violations) and ours.robots_max == 1
    verdict = [
        f"- throughput ≥ 0.8× the aiohttp loop: {t_ratio['fanmill crawl']:.2f}× — "
        f"{'met' if t_ratio['fanmill crawl'] >= 0.8 else '**not met**'}"
        + (f" (Scrapy {t_ratio['Scrapy']:.2f}×; ours / Scrapy = "
           f"{t_ratio['fanmill crawl'] / t_ratio['Scrapy']:.1f}×)" if "Scrapy" in t_ratio else "")
        + f"; the loop that only adds hashing and link extraction reaches "
          f"{t_ratio[LOOP_LINKS]:.2f}×",
        f"- politeness actual / ideal ≤ 1.05 (server span): {p_ratio:.3f} — "
        f"{'met' if p_ratio <= 1.05 else '**not met**'}",
        f"- zero missed / disallowed / out-of-scope / duplicate fetches / gap violations (0.25 s "
        f"Crawl-delay included), robots.txt once per host: {'met' if zero else '**not met**'}",
    ]
    md = "\n\n".join([
        "## crawler — polite crawling against Scrapy and the aiohttp ceiling",
        machine_line(),
        f"Command: `make bench-crawler`{' (quick mode)' if QUICK else ''}. Versions: {versions}; "
        f"aiohttp {aiohttp.__version__}. The fixture site runs in its own process; every crawl is "
        "scored from the server's request log against the generator's truth, never from the "
        "crawler's own output. fanmill crawl runs with its defaults otherwise: durable SQLite "
        "state, JSONL records, SHA-256 content hashing. Scrapy: a minimal spider following every "
        "<a href>, ROBOTSTXT_OBEY on, the same limits. The aiohttp loop fetches the known list of "
        "required URLs: the ceiling of any aiohttp crawler on this machine. The aiohttp loop + "
        "links also hashes each page and extracts and normalizes its links with the crawler's "
        "code (crawler/links.py), and does nothing else: the floor of any crawler that reads "
        "links in Python, before a frontier, politeness, state or output.",
        t_md, p_md, c_md, s_md, "Targets:\n" + "\n".join(verdict), prof_md])
    write_section("crawler", md)
    print(md)
    print(page_costs())
    print(cpu_per_page("make bench-crawler"))


if __name__ == "__main__":
    main()
