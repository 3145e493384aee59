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
stub_status.
Every crawl is checked: the throughput site fetched every page once (its JSONL against the
generator's truth, and nginx's request count), python3-doc's URL set equal across crawls and to
the loop's list, and each WARC read back with warcio and FastWARC, digests verified.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version as version_of
from pathlib import Path

from bench.crawler.nginx import Nginx, ensure_apt, free_port, serve
from bench.crawler.nginx import write_plain_site as nginx_site
from bench.results import machine_line, write_section

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / ".work" / "crawler-nginx"
QUICK = os.environ.get("FANMILL_BENCH_QUICK") == "1"
PY = sys.executable
ROUNDS = 1 if QUICK else 3
HOSTS, PAGES = (4, 100) if QUICK else (20, 1000)
CONCURRENCY, PER_HOST = 128, 16
LIMITS = ["--delay", "0", "--per-host", str(PER_HOST), "--concurrency", str(CONCURRENCY)]
DOCS_ADDRESS = "127.0.1.200"
EMPTY_ADDRESS = "127.0.1.201"  # robots.txt disallows everything: start-up cost alone
DOCS_CANDIDATES = ("/usr/share/doc/python3/html", "/usr/share/doc/python3.11/html",
                   "/usr/share/doc/python3-doc/html", "/usr/share/doc/python3.11-doc/html")
TIMEOUT = 1800

LOOP = "aiohttp loop (regex hrefs + urljoin)"
CRAWL = "crawl"
WARC_FAST = "crawl --warc (own encoder)"
WARC_WARCIO = "crawl --warc (warcio encoder)"
HANDLER = "crawl --handler --items"
CONTENDERS = [LOOP, CRAWL, WARC_FAST, WARC_WARCIO, HANDLER]
HANDLER_SPEC = "bench.crawler.title_handler:title"


@dataclass
class Target:
    """A site as the contenders see it."""

    name: str
    seeds: list[str]
    urls_file: Path  # the loop's URL list
    expected: frozenset[str]  # URLs every crawl must fetch (throughput: the truth; docs: warm-up)
    robots: int  # robots.txt requests a crawl makes


@dataclass
class Run:
    """One contender's run on one target."""

    contender: str
    wall: float
    cpu: float  # client: user + system seconds, children included
    nginx_cpu: float
    requests: int  # at nginx
    useful: int  # 2xx pages
    exit: int
    check: str  # "ok" or what was wrong
    records: list[dict] = field(default_factory=list, repr=False)
    items: int = 0

    @property
    def rate(self) -> float:
        return self.useful / self.wall if self.wall else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu / max(1, self.useful) * 1e6

    @property
    def nginx_us(self) -> float:
        return self.nginx_cpu / max(1, self.requests) * 1e6


def run_process(cmd: list[str], tag: str) -> tuple[float, float, int, str, str]:
    """Run *cmd* from the repository root: wall seconds (spawn to exit), CPU seconds of the
    process and its children (os.wait4 rusage), exit status, stdout, stderr."""
    out_path, err_path = WORK / f"{tag}.stdout", WORK / f"{tag}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        guard = threading.Timer(TIMEOUT, proc.kill)
        guard.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: the contender goes too
            proc.kill()
            proc.wait()
            raise
        finally:
            guard.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (wall, usage.ru_utime + usage.ru_stime, proc.returncode,
            out_path.read_text(errors="replace"), err_path.read_text(errors="replace"))


def _paths(kind: str, target: Target) -> dict[str, Path]:
    base = WORK / f"{target.name}-{kind}"
    return {"state": base.with_suffix(".db"), "out": base.with_suffix(".jsonl"),
            "items": base.with_suffix(".items.jsonl"), "warc": base.with_suffix(".warc")}


def command(contender: str, target: Target, kind: str) -> list[str]:
    """The command line of *contender* on *target*; its output paths are cleared first."""
    if contender == LOOP:
        return [PY, str(ROOT / "bench" / "crawler" / "aiohttp_loop.py"), str(target.urls_file),
                str(CONCURRENCY), str(PER_HOST), "regex"]
    p = _paths(kind, target)
    for path in p["state"].parent.glob(p["state"].name + "*"):
        path.unlink()
    p["out"].unlink(missing_ok=True)
    p["items"].unlink(missing_ok=True)
    shutil.rmtree(p["warc"], ignore_errors=True)
    args = [*target.seeds, *LIMITS, "--state", str(p["state"]), "--out", str(p["out"]), "-q"]
    if contender == CRAWL:
        return [PY, "-m", "crawler", *args]
    if contender == WARC_FAST:
        return [PY, "-m", "crawler", *args, "--warc", str(p["warc"])]
    if contender == WARC_WARCIO:
        return [PY, "-m", "bench.crawler.crawl_warcio", *args, "--warc", str(p["warc"])]
    if contender == HANDLER:
        return [PY, "-m", "crawler", *args, "--handler", HANDLER_SPEC, "--items", str(p["items"])]
    raise ValueError(contender)


def run_once(contender: str, target: Target, nginx: Nginx, kind: str | None = None) -> Run:
    """Run *contender* against *target* once, measure it and check what it fetched."""
    kind = kind or contender.split()[0] + str(CONTENDERS.index(contender))
    cmd = command(contender, target, kind)
    requests0, cpu0 = nginx.requests(), nginx.cpu()
    wall, cpu, code, stdout, stderr = run_process(cmd, f"{target.name}-{kind}")
    nginx_cpu = nginx.cpu() - cpu0
    requests = nginx.requests() - requests0 - 1  # the first status request is counted in it
    problems = []
    if code not in (0,):
        problems.append(f"exit {code}: {stderr.strip()[-300:]}")
    elif stderr.strip():
        problems.append(f"stderr: {stderr.strip()[-300:]}")
    if contender == LOOP:
        counts = dict(zip(stdout.split()[::2], map(int, stdout.split()[1::2]), strict=False))
        useful = counts.get("ok", 0)
        if counts.get("fetched") != len(target.expected):
            problems.append(f"fetched {counts.get('fetched')} of {len(target.expected)} URLs")
        run = Run(contender, wall, cpu, nginx_cpu, requests, useful, code, "")
    else:
        p = _paths(kind, target)
        records = [json.loads(line) for line in p["out"].read_text().splitlines()] \
            if p["out"].exists() else []
        urls = [r["url"] for r in records]
        ok = {r["url"] for r in records if r["status"] is not None and 200 <= r["status"] < 300}
        dups = len(urls) - len(set(urls))
        missing, extra = target.expected - set(urls), set(urls) - target.expected
        if missing or extra:
            problems.append(f"{len(missing)} expected URLs not fetched, {len(extra)} unexpected "
                            f"(e.g. {sorted(missing)[:2]} / {sorted(extra)[:2]})")
        if dups:
            problems.append(f"{dups} URLs recorded twice")
        if requests != len(records) + target.robots:
            problems.append(f"nginx saw {requests} requests for {len(records)} records + "
                            f"{target.robots} robots.txt")
        errors = Counter(r["error"].split(":")[0] for r in records if r.get("error"))
        if errors:
            problems.append("record errors: " + ", ".join(f"{k} ×{v}" for k, v in errors.items()))
        run = Run(contender, wall, cpu, nginx_cpu, requests, len(ok), code, "", records)
        if contender == HANDLER:
            run.items = sum(1 for _ in p["items"].open()) if p["items"].exists() else 0
            if run.items != len(records):
                problems.append(f"{run.items} items for {len(records)} pages")
    run.check = "; ".join(problems) or "ok"
    return run


def write_plain_site(port: int) -> tuple[dict[str, Path], Target]:
    """The fixture generator's plain site written under WORK/site (port baked into the links)."""
    roots, seeds, truth = nginx_site(WORK / "site", HOSTS, PAGES, 1, port)
    urls = sorted(truth.must_fetch)
    random.Random(1).shuffle(urls)  # the loop spreads over hosts as a crawl does
    urls_file = WORK / "throughput-urls.txt"
    urls_file.write_text("\n".join(urls) + "\n")
    return roots, Target("throughput", seeds, urls_file, truth.must_fetch, len(seeds))


def docs_root() -> Path:
    """Debian's python3-doc HTML directory (installed with apt when missing)."""
    def found() -> Path | None:
        for candidate in DOCS_CANDIDATES:
            if (Path(candidate) / "index.html").exists():
                return Path(candidate).resolve()
        return None

    if found() is None:
        ensure_apt(Path(DOCS_CANDIDATES[0]) / "index.html", "python3-doc")
    root = found()
    if root is None:
        raise RuntimeError("python3-doc installed but no html/index.html found under "
                           + ", ".join(DOCS_CANDIDATES))
    return root


def check_warc(directory: Path, expected_exchanges: int) -> str:
    """Read every WARC file in *directory* back with warcio (`warcio check` and its iterator,
    digests checked) and FastWARC (block and payload digests verified)."""
    from fastwarc.warc import ArchiveIterator

    from bench.crawler.warc_costs import check_fastwarc, check_warcio

    files = sorted(directory.glob("*.warc.gz"))
    if not files:
        return "**no WARC file written**"
    cli = subprocess.run([str(Path(PY).with_name("warcio")), "check", *map(str, files)],
                         capture_output=True, text=True)
    w = [check_warcio(f) for f in files]
    fw = [check_fastwarc(f) for f in files]
    kinds: Counter[str] = Counter()
    for f in files:
        for rec in ArchiveIterator(str(f), parse_http=False):
            kinds[str(rec.record_type).rsplit(".", 1)[-1]] += 1
    answers = kinds["response"] + kinds["revisit"]
    verdict = ("ok" if not cli.returncode and not sum(b for _, b in w) and not sum(b for _, b in fw)
               and answers == kinds["request"] == expected_exchanges else "**FAILED**")
    return (f"{verdict}: {len(files)} file(s), {sum(c for c, _ in w)} records "
            f"({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}; {expected_exchanges} "
            f"exchanges expected); `warcio check` exit {cli.returncode}, warcio iterator "
            f"{sum(b for _, b in w)} digest failures, FastWARC {sum(b for _, b in fw)}; "
            f"{sum(f.stat().st_size for f in files) / 2**20:.1f} MiB")


def rounds(targets: list[Target], nginx: Nginx, contenders: list[str],
           n: int) -> dict[str, dict[str, list[Run]]]:
    """Every contender on every target, *n* times, the order rotated each round."""
    runs: dict[str, dict[str, list[Run]]] = {t.name: {c: [] for c in contenders} for t in targets}
    for r in range(n):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for target in targets:
            for contender in order:
                print(f"cpu_per_page round {r + 1}/{n}: {target.name}: {contender}",
                      file=sys.stderr)
                run = run_once(contender, target, nginx)
                runs[target.name][contender].append(run)
                print(f"  {run.wall:.2f} s, {run.useful} pages, {run.cpu_us:.0f} µs/page, "
                      f"nginx {run.nginx_us:.0f} µs/request, {run.check}", file=sys.stderr)
    return runs


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
            "nginx": statistics.median(x.nginx_us for x in rs),
        }
        medians[name] = m
        checks = sorted({x.check for x in rs})
        rows.append(f"| {name} | {m['wall']:.2f} | {m['rate']:,.0f} | {m['x_rate']:.2f} | "
                    f"{m['cpu']:,.0f} | {m['x_cpu']:.2f} | {m['x_crawl']:.2f} | {m['nginx']:,.0f} | "
                    f"{rs[-1].useful:,} | {' / '.join(checks)} |")
    return rows, medians


def startup(nginx: Nginx, n: int) -> str:
    """CPU of a crawl that fetches only robots.txt (disallowed everywhere) and of the loop over
    an empty list: the fixed cost in every per-page figure."""
    seed = f"http://{EMPTY_ADDRESS}:{nginx.port}/"
    empty = Target("startup", [seed], WORK / "empty-urls.txt", frozenset(), 1)
    empty.urls_file.write_text("")
    crawl = [run_once(CRAWL, empty, nginx, kind="crawl") for _ in range(n)]
    loop = [run_once(LOOP, empty, nginx, kind="loop") for _ in range(n)]
    return (f"Fixed cost (start-up + shutdown, median of {n}): `crawl` on a host whose "
            f"robots.txt disallows everything (robots.txt fetched, nothing else) "
            f"{statistics.median(x.cpu for x in crawl) * 1e3:.0f} ms client CPU, "
            f"{statistics.median(x.wall for x in crawl):.2f} s wall; the loop over an empty list "
            f"{statistics.median(x.cpu for x in loop) * 1e3:.0f} ms CPU, "
            f"{statistics.median(x.wall for x in loop):.2f} s wall. Both are inside the per-page "
            "figures above (spawn to exit), which matters on the small python3-doc crawl.")


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
    parser.add_argument("--profile", choices=[k for k in SHORT if k != "loop"],
                        help="instead: one in-process crawl of each selected site under cProfile "
                             "(top 30 by own time)")
    return parser.parse_args(argv)


def profile(contender: str, target: Target) -> str:
    """cProfile of one in-process crawl by *contender* (not the loop) of *target*."""
    import cProfile
    import io
    import pstats

    from crawler.cli import main as crawl_main
    from crawler.warc import WarcWriter

    cmd = command(contender, target, "profile")
    args = cmd[cmd.index("crawler") + 1:] if "crawler" in cmd else cmd[3:]
    saved = WarcWriter.records_class
    if contender == WARC_WARCIO:
        from bench.crawler.warc_costs import WarcioRecords

        WarcWriter.records_class = WarcioRecords
    prof = cProfile.Profile()
    try:
        started = time.process_time()
        prof.runcall(crawl_main, args)
        cpu = time.process_time() - started
    finally:
        WarcWriter.records_class = saved
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(30)
    body = text.getvalue()
    return (f"### profile: {contender} on {target.name} ({cpu:.1f} s CPU under cProfile)\n\n```\n"
            + body[body.find("   ncalls"):].replace(str(ROOT) + "/", "").rstrip() + "\n```")


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
    with serve(WORK / "nginx", roots, port) as nginx:
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
                                   + check_warc(_paths(kind, target)["warc"], exchanges))
        nginx_log = (nginx.prefix / "error.log").read_text(errors="replace").strip()

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
    md = "\n\n".join([
        "## crawler-nginx — client and server CPU per page, sites served by nginx "
        "(issues 14 and 15)",
        machine_line(),
        f"Command: `{command_line}`{' with FANMILL_BENCH_QUICK=1 (quick mode)' if QUICK else ''}. "
        "**The machine has 2 cores and is shared** (other engineers run tests at the same time): "
        "compare the ratios within this run, not absolute figures across runs. "
        f"nginx {version} (private instance, 1 worker, access_log off, sendfile, one 127.0.1.x "
        f"address per host), aiohttp {version_of('aiohttp')} (the loop; the crawler's http:// "
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
    if complete:
        write_section("crawler-nginx", md)
    else:
        print("a subset: bench/RESULTS.md left as it is", file=sys.stderr)
    return md


if __name__ == "__main__":
    print(main(" ".join(["python -m bench.crawler.cpu_per_page", *sys.argv[1:]]), sys.argv[1:]))
