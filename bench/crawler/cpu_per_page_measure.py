"""Measuring one contender against nginx for cpu_per_page: the sites, the command lines, the runs.

The contenders, their command lines and the checks of what each fetched live here;
bench/crawler/cpu_per_page.py (the command line) runs them and cpu_per_page_report.py formats them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.crawler.nginx import Nginx, ensure_apt
from bench.crawler.nginx import write_plain_site as nginx_site
from bench.crawler.workers_measure import reap, start

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
        """Useful pages per wall second."""
        return self.useful / self.wall if self.wall else 0.0

    @property
    def cpu_us(self) -> float:
        """Client CPU microseconds per useful page."""
        return self.cpu / max(1, self.useful) * 1e6

    @property
    def nginx_us(self) -> float:
        """nginx CPU microseconds per request."""
        return self.nginx_cpu / max(1, self.requests) * 1e6


def run_process(cmd: list[str], tag: str) -> tuple[float, float, int, str, str]:
    """Run *cmd* from the repository root: wall seconds (spawn to exit), CPU seconds of the
    process and its children (os.wait4 rusage), exit status, stdout, stderr."""
    out_path, err_path = WORK / f"{tag}.stdout", WORK / f"{tag}.stderr"
    proc, started = start(cmd, ROOT, out_path, err_path)
    wall, cpu, status = reap(proc, started, TIMEOUT)
    return (wall, cpu, status, out_path.read_text(errors="replace"),
            err_path.read_text(errors="replace"))


def output_paths(kind: str, target: Target) -> dict[str, Path]:
    """The state, JSONL, items and WARC paths of a crawl of *target* tagged *kind*."""
    base = WORK / f"{target.name}-{kind}"
    return {"state": base.with_suffix(".db"), "out": base.with_suffix(".jsonl"),
            "items": base.with_suffix(".items.jsonl"), "warc": base.with_suffix(".warc")}


def command(contender: str, target: Target, kind: str) -> list[str]:
    """The command line of *contender* on *target*; its output paths are cleared first."""
    if contender == LOOP:
        return [PY, str(ROOT / "bench" / "crawler" / "aiohttp_loop.py"), str(target.urls_file),
                str(CONCURRENCY), str(PER_HOST), "regex"]
    p = output_paths(kind, target)
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
        p = output_paths(kind, target)
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

