"""Measuring helpers of bench/crawler/workers.py: the plain site on disk, processes timed with
their children's CPU, PostgreSQL's CPU from /proc, worker processes of a `crawl --workers N`, and
nginx's timing log read back as the fixture server's request records (so bench/crawler/score.py
judges it)."""

from __future__ import annotations

import heapq
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.crawler.nginx import _children, write_plain_site
from crawler.cli_workers import worker_pids
from fixtures.site import RequestRecord, Truth

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / ".work" / "crawler-workers"
QUICK = os.environ.get("FANMILL_BENCH_QUICK") == "1"  # a smoke run: everything smaller
PY = sys.executable
TIMEOUT = 1800  # seconds any one crawl may take
CONCURRENCY = 128  # --concurrency of every crawl here


def clear(prefix: Path) -> None:
    """Remove PREFIX.* (a run's state, JSONL and lock files)."""
    for path in prefix.parent.glob(prefix.name + ".*"):
        path.unlink()

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Site:
    """A plain site written to disk: document roots by address, seeds, the generator's truth."""

    roots: dict[str, Path]
    seeds: list[str]
    truth: Truth

    @property
    def hosts(self) -> set[str]:
        return set(self.roots)


def write_site(root: Path, hosts: int, pages: int, seed: int, port: int) -> Site:
    """The fixture generator's plain site as static files under *root* (nginx.write_plain_site)."""
    roots, seeds, truth = write_plain_site(root, hosts, pages, seed, port)
    return Site(roots, seeds, truth)


# -- processes ------------------------------------------------------------------------------------

def start(cmd: list[str], cwd: Path, out: Path, err: Path) -> tuple[subprocess.Popen, float]:
    """Spawn *cmd* (stdout and stderr to files); return it and its perf_counter start."""
    with open(out, "wb") as o, open(err, "wb") as e:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=o, stderr=e)
    return proc, started


def reap(proc: subprocess.Popen, started: float, timeout: float) -> tuple[float, float, int]:
    """Wait for *proc* (killed after *timeout* s): wall seconds since *started*, CPU seconds of it
    and of the children it reaped (os.wait4: `crawl --workers N` waits for its workers, so their
    CPU is in it), exit status."""
    guard = threading.Timer(timeout, proc.kill)
    guard.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        guard.cancel()
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, proc.returncode


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()


def postgres_cpu(data_dir: Path) -> float:
    """CPU seconds of a PostgreSQL cluster so far: utime + stime of the postmaster and every live
    child (backends, checkpointer, WAL writer, autovacuum...), plus the postmaster's cutime +
    cstime, which holds the children it has reaped (a backend exits with its connection)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    f = _stat(postmaster)
    ticks = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    for pid in _children(postmaster):
        try:
            f = _stat(pid)
        except OSError:  # exited meanwhile: it is in the postmaster's cutime next time
            continue
        ticks += int(f[11]) + int(f[12])
    return ticks / TICK


def workers_of(parent: int) -> dict[int, int]:
    """Worker index (the last part of its id) -> pid of the workers of `crawl --workers` *parent*."""
    return worker_pids(parent)


# -- outputs --------------------------------------------------------------------------------------

def out_files(out: Path) -> list[Path]:
    """The JSONL files of a crawl given `--out OUT`: OUT itself (one process) or OUT's name with
    each worker's id before the extension (cli_workers.tagged)."""
    files = [out] if out.exists() else []
    return files + sorted(out.parent.glob(f"{out.stem}.*{out.suffix}"))


def read_records(files: list[Path]) -> list[dict]:
    """Every JSON record of *files*; a torn last line (a worker killed mid-write) is skipped."""
    records = []
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


# -- nginx's timing log ---------------------------------------------------------------------------

@dataclass(slots=True)
class Logged:
    """One request in nginx's timing log: start and end (wall clock), host address, status, path."""

    start: float
    end: float
    host: str
    status: int
    path: str


def read_log(path: Path) -> list[Logged]:
    """Parse bench.crawler.nginx.TIMING_FORMAT lines; start = msec - request_time."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        msec, took, host, status, uri = line.split(" ", 4)
        end = float(msec)
        rows.append(Logged(end - float(took), end, host, int(status), uri))
    rows.sort(key=lambda r: r.start)
    return rows


def as_records(rows: list[Logged]) -> list[RequestRecord]:
    """The log as the fixture server's RequestRecords (t = start), each with how many requests to
    its host were in flight when it started, itself included (a request ended at the very
    millisecond another starts is over)."""
    open_ends: dict[str, list[float]] = defaultdict(list)
    records = []
    for r in rows:  # sorted by start
        ends = open_ends[r.host]
        while ends and ends[0] <= r.start:
            heapq.heappop(ends)
        heapq.heappush(ends, r.end)
        records.append(RequestRecord(r.start, r.host, r.path, len(ends), r.status))
    return records


# -- how the hosts were spread over the workers and over time -------------------------------------

@dataclass
class Timeline:
    """From the records' fetch_time: the most hosts crawled at once, each worker's story, the
    rate while every worker was fetching (up to the first worker's last page) and how long the
    last worker then fetched alone."""

    most_hosts: int
    workers: list[str]
    span: float = 0.0  # first to last fetch
    together_rate: float = 0.0  # pages/s up to the first worker's last page
    alone: float = 0.0  # seconds from the second-to-last worker's last page to the last page


def timeline(files: list[Path], gap: float = 0.5) -> Timeline:
    """Each host's window (first to last fetch) per JSONL file (= per worker); hosts a worker
    started within *gap* seconds of each other form one wave: '8 hosts at 0.0 s, 2 at 5.7 s'."""
    per_file: list[tuple[int, dict[str, list[float]]]] = []
    times: list[float] = []
    t0 = float("inf")
    for path in files:
        windows: dict[str, list[float]] = {}
        n = 0
        for r in read_records([path]):
            t = r.get("fetch_time")
            if t is None:
                continue
            n += 1
            times.append(t)
            host = r["url"].split("/")[2]
            w = windows.setdefault(host, [t, t])
            w[0], w[1] = min(w[0], t), max(w[1], t)
            t0 = min(t0, t)
        per_file.append((n, windows))
    events = sorted((t, d) for _, ws in per_file for a, b in ws.values() for t, d in ((a, 1), (b, -1)))
    most = live = 0
    for _, d in events:
        live += d
        most = max(most, live)
    stories = []
    for n, windows in per_file:
        starts = sorted(a - t0 for a, _ in windows.values())
        waves: list[list[float]] = []
        for s in starts:
            if waves and s - waves[-1][0] <= gap:
                waves[-1].append(s)
            else:
                waves.append([s])
        last = max((b - t0 for _, b in windows.values()), default=0.0)
        stories.append(f"{n:,} pages: " + ", ".join(f"{len(w)} host{'s' * (len(w) > 1)} from "
                                                      f"{w[0]:.1f} s" for w in waves)
                       + f"; last page at {last:.1f} s")
    lasts = sorted(max((b for _, b in ws.values()), default=t0) for _, ws in per_file)
    span = max(times, default=t0) - t0
    first_done = lasts[0] if lasts else t0
    together = sum(1 for t in times if t <= first_done) / (first_done - t0) \
        if first_done > t0 else 0.0
    alone = lasts[-1] - lasts[-2] if len(lasts) > 1 else 0.0
    return Timeline(most, stories, span, together, alone)


# -- the rest of the machine ----------------------------------------------------------------------

def machine_busy() -> float:
    """CPU seconds every process of the machine has run so far (/proc/stat: user, nice, system,
    irq, softirq, steal; guest time is inside user)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


def wait_quiet(limit: float = 0.25, patience: float = 300.0) -> tuple[float, float]:
    """Wait (at most *patience* s) for a second in which the machine ran at most *limit* cores
    busy: other engineers' jobs share it. Return (seconds waited, the last second's busy cores)."""
    started = time.monotonic()
    while True:
        before, t = machine_busy(), time.monotonic()
        time.sleep(1.0)
        busy = (machine_busy() - before) / (time.monotonic() - t)
        waited = time.monotonic() - started
        if busy <= limit or waited >= patience:
            return waited, busy
