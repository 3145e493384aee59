"""The politeness-bound scenario of bench/crawler/workers.py (issue 16): 20 hosts x 50 pages,
`crawl --workers 4 --state postgresql://... --delay 0.1 --per-host 1 --lease 5`; once `crawl status
--json` shows a worker has recorded KILL_AFTER pages it gets SIGKILL, and nginx's log of every
request is scored by bench/crawler/score.py (gaps per host, in flight per host, missed,
disallowed, out of scope, refetches) with the takeover timed from the state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.crawler.nginx import STATUS_ADDRESS, free_port, serve
from bench.crawler.score import TOLERANCE, Score, score
from bench.crawler.workers_measure import (
    CONCURRENCY,
    PY,
    QUICK,
    ROOT,
    TIMEOUT,
    WORK,
    as_records,
    clear,
    machine_busy,
    out_files,
    read_log,
    read_records,
    reap,
    start,
    wait_quiet,
    workers_of,
    write_site,
)
from fixtures import postgres

POL_HOSTS, POL_PAGES = 20, (20 if QUICK else 50)
POL_DELAY, POL_WORKERS, LEASE = 0.1, 4, 5.0
KILL_AFTER = 5 if QUICK else 20  # pages the victim has recorded (crawl status) before its kill -9
POLL = 0.1  # seconds between two `crawl status` calls while waiting to kill


@dataclass
class Kill:
    """The worker killed mid-crawl and what the state said it held."""

    victim: str = ""
    pid: int = 0
    at: float = 0.0  # wall clock (time.time())
    after: float = 0.0  # seconds since the crawl was spawned
    pages: int = 0  # recorded by the victim (crawl status) when it was killed
    hosts: list[str] = field(default_factory=list)  # hosts it owned at the kill
    leased_urls: int = 0  # URLs in 'fetching' on those hosts (leased to it, sent or not)
    lease_left: float = 0.0  # seconds its longest lease still had to run
    status_calls: int = 0
    pages_by_worker: dict[str, int] = field(default_factory=dict)  # at the kill
    hosts_by_owner: dict[str, int] = field(default_factory=dict)  # live leases at the kill


def _status(url: str) -> dict:
    done = subprocess.run([PY, "-m", "crawler", "status", "--state", url, "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise RuntimeError(f"crawl status exited {done.returncode}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def _index(worker: str) -> int:
    return int(worker.rsplit("-", 1)[1])


def _per_worker(values: dict[str, object], form: str) -> str:
    """"1: v, 2: v, ..." of a dict by worker id, in worker order ("-" for none)."""
    return ", ".join(f"{_index(w)}: {form.format(v)}"
                     for w, v in sorted(values.items(), key=lambda kv: _index(kv[0]))) or "-"


def _kill_when_ready(proc: subprocess.Popen, url: str, cluster: postgres.Cluster, db: str,
                     started_wall: float, log_path: Path) -> Kill:
    """Once nginx has logged a request (so the polls do not slow the workers' start-up), poll
    `crawl status --json` until a worker has recorded KILL_AFTER pages (the first such by worker
    index), SIGKILL it, then read from the state what it held."""
    kill = Kill()
    while proc.poll() is None and not (log_path.exists() and log_path.stat().st_size):
        time.sleep(0.02)
    while proc.poll() is None:
        try:
            report = _status(url)
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            print(f"  status: {exc}", file=sys.stderr)
            report = {"workers": []}
        kill.status_calls += 1
        alive = workers_of(proc.pid)
        ready = sorted((w for w in report["workers"]
                        if w["pages"] >= KILL_AFTER and _index(w["id"]) in alive), key=lambda w: _index(w["id"]))
        if ready:
            kill.pages_by_worker = {w["id"]: w["pages"] for w in report["workers"]}
            kill.victim, kill.pages = ready[0]["id"], ready[0]["pages"]
            kill.pid = alive[_index(kill.victim)]
            os.kill(kill.pid, signal.SIGKILL)
            kill.at = time.time()
            kill.after = kill.at - started_wall
            break
        time.sleep(POLL)
    if not kill.victim:
        return kill
    victim = kill.victim.replace("'", "''")
    for line in cluster.psql(f"SELECT owner, count(*) FROM hosts WHERE owner IS NOT NULL AND "
                             f"lease_until >= {kill.at} GROUP BY owner", db).splitlines():
        owner, n = line.rsplit("|", 1)
        kill.hosts_by_owner[owner] = int(n)
    rows = cluster.psql(
        f"SELECT origin, lease_until FROM hosts WHERE owner = '{victim}' "
        f"AND lease_until >= {kill.at}", db)
    owned = [line.split("|") for line in rows.splitlines() if line]
    kill.hosts = sorted(o for o, _ in owned)
    kill.lease_left = max((float(u) - kill.at for _, u in owned), default=0.0)
    if kill.hosts:
        quoted = ",".join("'" + h.replace("'", "''") + "'" for h in kill.hosts)
        kill.leased_urls = int(cluster.psql(
            f"SELECT count(*) FROM urls WHERE status = 'fetching' AND origin IN ({quoted})", db))
    return kill


@dataclass
class Takeover:
    """The state around the takeover of the killed worker's hosts (psql polls every 0.25 s)."""

    polls: int = 0
    after: float = float("nan")  # seconds from the kill to the first poll where it owns nothing
    owners: dict[str, int] = field(default_factory=dict)  # hosts per owner at that poll
    seen_age: dict[str, float] = field(default_factory=dict)  # workers' `seen` age, poll before


def _watch_takeover(proc: subprocess.Popen, cluster: postgres.Cluster, db: str,
                    kill: Kill) -> Takeover:
    """Poll the hosts' owners and the workers' last `seen` until the victim's hosts have gone
    to other workers (or the crawl ended)."""
    out = Takeover()
    if not kill.victim:
        return out
    seen: dict[str, float] = {}
    while proc.poll() is None:
        now = time.time()
        owners = dict(line.rsplit("|", 1) for line in cluster.psql(
            "SELECT owner, count(*) FROM hosts WHERE owner IS NOT NULL GROUP BY owner",
            db).splitlines() if line)
        out.polls += 1
        if owners and kill.victim not in owners:
            out.after = now - kill.at
            out.owners = {k: int(v) for k, v in owners.items()}
            out.seen_age = {w: now - t for w, t in seen.items()}
            break
        seen = {w: float(t) for w, t in (line.rsplit("|", 1) for line in cluster.psql(
            "SELECT id, seen FROM workers WHERE left_at IS NULL", db).splitlines() if line)}
        time.sleep(0.25)
    return out


def politeness(cluster: postgres.Cluster) -> tuple[str, list[tuple[str, str, bool]]]:
    """4 workers on PostgreSQL, one killed with SIGKILL mid-crawl, scored from nginx's log."""
    prefix = WORK / "nginx-polite"
    log_path = prefix / "access.log"
    addresses = [f"127.0.1.{i + 1}" for i in range(POL_HOSTS)]
    port = free_port(addresses + [STATUS_ADDRESS])
    site = write_site(WORK / "site-polite", POL_HOSTS, POL_PAGES, 2, port)
    base = WORK / "polite"
    clear(base)
    out = base.with_suffix(".jsonl")
    db = "polite"
    cluster.drop_database(db)
    url = cluster.create_database(db)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    cmd = [PY, "-m", "crawler", *site.seeds, "--workers", str(POL_WORKERS), "--state", url,
           "--delay", str(POL_DELAY), "--per-host", "1", "--concurrency", str(CONCURRENCY),
           "--lease", str(LEASE), "--out", str(out), "-q"]
    print(f"workers politeness: {POL_WORKERS} workers, one killed", file=sys.stderr)
    waited, _ = wait_quiet()
    machine0 = machine_busy()
    with serve(prefix, site.roots, port, access_log=log_path):
        started_wall = time.time()
        proc, started = start(cmd, ROOT, base.with_suffix(".stdout"), base.with_suffix(".stderr"))
        try:
            kill = _kill_when_ready(proc, url, cluster, db, started_wall, log_path)
            takeover = _watch_takeover(proc, cluster, db, kill)
        except BaseException:
            proc.kill()
            raise
        wall, cpu, code = reap(proc, started, TIMEOUT)
    others = max(0.0, machine_busy() - machine0 - cpu) / wall  # nginx, PostgreSQL, polls included
    final = _status(url)
    cluster.drop_database(db)
    logged = read_log(log_path)
    records = as_records(logged)
    s: Score = score(records, site.truth, port, site.hosts, POL_DELAY)
    stderr = base.with_suffix(".stderr").read_text(errors="replace").strip()
    # refetches: page URLs requested more than once; which of them the victim had written out
    counts = Counter((r.host, r.path) for r in logged if r.path != "/robots.txt")
    twice = {f"http://{h}:{port}{p}" for (h, p), n in counts.items() if n > 1}
    victim_out = [f for f in out_files(out) if kill.victim and f".{kill.victim}." in f.name]
    victim_urls = {r["url"] for r in read_records(victim_out)}
    written_then_lost = len(twice & victim_urls)
    records_all = read_records(out_files(out))
    union = {r["url"] for r in records_all}
    union_missing = len(site.truth.must_fetch - union)
    non200 = Counter(r.status for r in logged if r.status != 200)
    victim_hosts = {h.split("//", 1)[1].split(":")[0] for h in kill.hosts}
    before = [r for r in logged if r.host in victim_hosts and r.start < kill.at]
    after = [r for r in logged if r.host in victim_hosts and r.start >= kill.at]
    resumed = (min(r.start for r in after) - kill.at) if after else float("nan")
    last_sent = (kill.at - max(r.start for r in before)) if before else float("nan")
    first_start = min((r.start for r in logged), default=started_wall)
    last_end = max((r.end for r in logged), default=started_wall)
    startup, tail = first_start - started_wall, started_wall + wall - last_end
    in_flight_at_kill = sum(1 for r in logged if r.host in victim_hosts
                            and r.start <= kill.at < r.end)
    pages = POL_PAGES
    ideal = (pages + 1) * POL_DELAY
    limit = 1.05 * ideal + LEASE
    worst_in_flight = s.max_in_flight
    victim_pages_final = next((w["pages"] for w in final["workers"] if w["id"] == kill.victim), 0)
    per_worker = ", ".join(f"{w['id'].rsplit('-', 1)[1]}: {w['pages']}" for w in
                           sorted(final["workers"], key=lambda w: _index(w["id"])))
    bound = len(kill.hosts)

    targets = [
        ("gaps between request starts at one host < delay − 5 ms",
         f"{s.violations} (smallest gap {s.min_gap * 1000:.1f} ms; delay {POL_DELAY * 1000:.0f} ms)",
         s.violations == 0 and s.min_gap >= POL_DELAY - TOLERANCE),
        ("max requests in flight per host at the server (≤ --per-host 1)", f"{worst_in_flight}",
         worst_in_flight <= 1),
        ("missed pages (of the truth's {:,})".format(len(site.truth.must_fetch)), f"{s.missed}",
         s.missed == 0),
        ("disallowed / out-of-scope fetches", f"{s.disallowed} / {s.out_of_scope}",
         s.disallowed == 0 and s.out_of_scope == 0),
        ("refetches (page URLs requested twice) ≤ the killed worker's hosts at the kill "
         "(per-host 1: its most in flight)",
         f"{s.duplicates} ≤ {bound}", kill.victim != "" and s.duplicates <= bound),
        (f"wall ≤ 1.05 × ideal ({ideal:.1f} s) + lease ({LEASE:g} s) = {limit:.2f} s",
         f"{wall:.2f} s = start-up {startup:.2f} s (spawn to the first request) + server span "
         f"{s.span:.2f} s + exit {tail:.2f} s" + ("" if wall <= limit else
                                                  f"; over by {wall - limit:.2f} s "
                                                  f"({(wall - limit) / limit:.0%})"),
         wall <= limit),
    ]
    rows = ["| target | measured | met |", "|---|---|---|"]
    rows += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in targets]
    facts = [
        f"- crawl exit status {code} (a killed worker makes the parent exit 2); wall (spawn to "
        f"exit) {wall:.2f} s; server span (first to last request start) {s.span:.2f} s "
        f"= {s.span / ideal:.2f}× ideal (span ≤ 1.05 × ideal + lease: "
        f"{'yes' if s.span <= limit else 'no'}); wall = start-up (spawn to the first request at "
        f"nginx) {startup:.2f} s + span {s.span:.2f} s + the rest (last request to exit) "
        f"{tail:.2f} s; client CPU {cpu:.1f} s; the rest of the machine (nginx, PostgreSQL, the "
        f"bench's status polls, other jobs) {others:.2f} cores busy meanwhile (waited "
        f"{waited:.0f} s for a quiet machine first); stderr: {stderr[-300:] if stderr else 'empty'}",
        "- at the kill: pages recorded per worker (crawl status) "
        + _per_worker(kill.pages_by_worker, "{}")
        + "; hosts leased per worker (state) "
        + _per_worker(kill.hosts_by_owner, "{}"),
        f"- killed: worker {kill.victim or '(none: no worker reached the threshold)'} "
        f"{kill.after:.2f} s after the spawn, when `crawl status --json` showed it had recorded "
        f"{kill.pages} pages (threshold {KILL_AFTER}; {kill.status_calls} status calls); it owned "
        f"{len(kill.hosts)} host(s) ({', '.join(sorted(victim_hosts)) or '-'}), "
        f"{kill.leased_urls} URL(s) of them leased ('fetching') in the state, its leases ran "
        f"≤ {kill.lease_left:.2f} s more; {in_flight_at_kill} request(s) to its hosts were open "
        f"at nginx at the kill; its last request started {last_sent * 1000:.0f} ms before the kill",
        f"- takeover: the first request to one of its hosts after the kill came "
        f"{resumed:.2f} s later (lease {LEASE:g} s, heartbeat every {LEASE / 3:.2f} s); the "
        f"first state poll (psql, every 0.25 s; {takeover.polls} polls) where the victim owned "
        f"nothing came {takeover.after:.2f} s after the kill, hosts per owner then: "
        + _per_worker(takeover.owners, "{}")
        + "; the live workers' `seen` (workers table) at the poll before was "
        + _per_worker(takeover.seen_age, "{:.1f} s") + " old (the claim's fair share counts workers seen within the lease)",
        f"- refetched page URLs {s.duplicates}: {written_then_lost} of them were in the killed "
        f"worker's JSONL (fetched and written out, not yet committed to the state), "
        f"{s.duplicates - written_then_lost} were not (in flight, or fetched and not yet written)",
        f"- robots.txt per host {s.robots_min}–{s.robots_max}; non-200 answers "
        f"{dict(non200) or 0}; requests {s.requests:,} at nginx for {len(site.truth.must_fetch):,} "
        f"pages + {POL_HOSTS} robots.txt",
        f"- outputs: the union of the {len(out_files(out))} JSONL files holds "
        f"{len(union):,} URLs ({union_missing} of the truth missing; {len(records_all):,} records)",
        f"- pages per worker at the end (crawl status; the victim's count stops at the kill: "
        f"{victim_pages_final}): {per_worker}",
    ]
    head = (f"**politeness-bound site, one worker killed** — the plain site, {POL_HOSTS} hosts × "
            f"{pages} pages, `crawl --workers {POL_WORKERS} --state postgresql://... --delay "
            f"{POL_DELAY:g} --per-host 1 --concurrency {CONCURRENCY} --lease {LEASE:g}`; the first "
            f"worker (by index) whose recorded pages reach {KILL_AFTER} in `crawl status --json` "
            f"(polled every ~{POLL:g} s plus the call's own time) gets SIGKILL. Scored from nginx's "
            "access log (start = $msec − $request_time, ms resolution; gaps and in-flight counts "
            "include robots.txt). Ideal = (pages + robots.txt) × delay = "
            f"{pages + 1} × {POL_DELAY:g} = {ideal:.1f} s.")
    md = head + "\n\n" + "\n".join(rows) + "\n\n" + "\n".join(facts)
    return md, [(t, m, ok) for t, m, ok in targets]


# -- the report -----------------------------------------------------------------------------------
