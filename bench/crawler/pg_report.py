"""The "crawler-pg-scale" section of bench/RESULTS.md from bench/crawler/pg_scale.py's figures."""

from __future__ import annotations

import re
import statistics
from typing import Any

from bench.crawler.pg_workload import (
    COMMIT_BATCH,
    CONCURRENCY,
    K_HOSTS,
    LEASE_SECONDS,
    PER_HOST,
    REBALANCE_EVERY,
    REFILL_EVERY,
    WINDOW,
    hungry_below,
)
from crawler.engine_worker import CONTENTS_EVERY, POLL_SECONDS, RELEASE_AFTER

# The single-process crawler against nginx (bench/RESULTS.md, section crawler-nginx, throughput
# site): useful pages/s and client CPU per page of `crawl`, and the plain aiohttp loop's pages/s.
CRAWL_PAGES_S, CRAWL_CPU_US, LOOP_PAGES_S = 2_338, 441, 4_241
MACHINES = 100
WORKERS_PER_MACHINE = 2
PER_MACHINE = (2_000, 4_000)  # pages/s per crawl machine, the range the brief gives
SERVER_CORES = (16, 32, 64)
# This section's previous run (code of da36e43, before c8dbb3f adopted its fixes): another
# cycle (16 hosts per worker, 256-URL leases, host_urls after each claim), same frontier.
PREVIOUS = dict(commit="da36e43", srv_as_is=2_240.1, srv_fixed=345.9, ps_as_is=820,
                ps_fixed=3_210, wal_as_is=2_180, wal_fixed=2_523, claim_1m=252.08,
                lease_10k=93.09)


def n(x: float | None, digits: int = 0) -> str:
    """A number with thousands separators."""
    if x is None:
        return "–"
    return f"{float(x):,.{digits}f}"


def mib(b: float) -> str:
    return f"{b / 2**20:,.1f}"


def table(head: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(head) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def exec_ms(plan: str) -> float:
    m = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return float(m.group(1)) if m else float("nan")


def key_lines(plan: str, limit: int = 34) -> str:
    """The plan's nodes with their actual rows (costs and buffer lines dropped), long lines cut."""
    keep = []
    for line in plan.splitlines():
        if re.search(r"Buffers:|Planning|Heap Blocks|Buckets|Recheck Cond|Hash Cond|Sort Key|"
                     r"Memory Usage|Workers Planned|Workers Launched", line):
            continue
        line = re.sub(r"\(cost=[^)]*\) ", "", line.rstrip())
        line = re.sub(r"'\{http[^}]*\}'", "'{…origins…}'", line)
        if len(line) > 150:
            line = line[:147] + "..."
        keep.append(line)
    if len(keep) > limit:
        keep = keep[:limit - 1] + ["  ..."] + keep[-1:]
    return "\n".join(keep)


def details(title: str, plan: str) -> str:
    return (f"<details><summary>{title}</summary>\n\n```\n{key_lines(plan)}\n```\n</details>\n")


def _plan(plans: list[list[str]], prefix: str, nth: int = 0) -> str:
    found = [p for label, p in plans if label.startswith(prefix)]
    return found[nth] if len(found) > nth else ""


def _rows_of(plan: str) -> str:
    m = re.search(r"^\S.*?actual time=[\d.]+\.\.[\d.]+ rows=(\d+)", plan, re.M)
    return n(int(m.group(1))) if m else "?"


# -- derived figures of the run --------------------------------------------------------------

def derive(part: dict[str, Any]) -> dict[str, Any]:
    """The per-page figures of the scale run."""
    run = part["run"]
    res = run["results"]
    pages = run["pages"]
    stmts = [dict(s, label=_relabel(s["label"])) for s in run["statements"]
             if not s["label"].startswith(("asyncpg:", "driver:", "SELECT statement"))]

    def total(key: str) -> Any:
        return sum(r[key] for r in res)

    d = dict(
        pages=pages, wall=run["wall"], pages_s=pages / run["wall"],
        srv_us=run["server_cpu"] / pages * 1e6,
        cli_us=(run["client_cpu"] - run["gen"]) / pages * 1e6,
        cli_all_us=run["client_cpu"] / pages * 1e6,
        wal_b=run["wal"] / pages,
        client_stmts=total("statements") / pages,
        server_calls=sum(s["calls"] for s in stmts),
        exec_ms=sum(s["ms"] for s in stmts),
        stmts=stmts,
        commits=total("commits"), claims=total("claims"), leased=total("leased"),
        released=total("released"), released_calls=total("released_calls"),
        empty_leases=total("empty_leases"), idle_waits=total("idle_waits"),
        idle_s=total("idle_s"), worker_wall=total("wall"),
        links=total("links"), new_urls=total("new_urls"), refused=total("refused"),
        lost=total("lost"), drained=sum(r.get("drained", 0) for r in res),
        links_found=sum(r.get("links_found", r["links"]) for r in res),
        direct=sum(r.get("direct", 0) for r in res),
        direct_leased=sum(r.get("direct_leased", 0) for r in res),
    )
    shares = [s for r in res for s in r.get("shares", [])]
    d["share_calls"] = len(shares)
    d["share_median"] = statistics.median(shares) if shares else None
    sizes = [s for r in res for s in r["lease_sizes"]]
    d["leases"] = len(sizes)
    d["lease_median"] = statistics.median(sizes) if sizes else 0
    d["lease_big"] = sum(s >= 1000 for s in sizes)
    d["lease_small"] = sum(0 < s < 100 for s in sizes)
    claims = [s for r in res for s in r["claim_sizes"]]
    d["claim_calls"] = len(claims)
    d["claim_nonzero"] = sum(1 for s in claims if s)
    d["claim_median"] = statistics.median([s for s in claims if s]) if any(claims) else 0
    s0 = {(r[0], r[1]): r[2] for r in part["sizes0"]}
    s1 = {(r[0], r[1]): r[2] for r in part["sizes1"]}
    d["s0"], d["s1"] = s0, s1
    d["growth"] = sum(s1[k] - s0.get(k, 0) for k in s1 if k[1].startswith("total")) / pages
    u0, u1 = run["stats0"]["urls"], run["stats1"]["urls"]
    h0, h1 = run["stats0"]["hosts"], run["stats1"]["hosts"]
    d["upd_u"] = u1["n_tup_upd"] - u0["n_tup_upd"]
    d["hot_u"] = u1["n_tup_hot_upd"] - u0["n_tup_hot_upd"]
    d["upd_h"] = h1["n_tup_upd"] - h0["n_tup_upd"]
    d["hot_h"] = h1["n_tup_hot_upd"] - h0["n_tup_hot_upd"]
    d["autovac_u"] = u1["autovacuum_count"] - u0["autovacuum_count"]
    d["max_dead_u"] = max([s["stats"]["urls"]["n_dead_tup"] for s in run["samples"]]
                          + [u1["n_dead_tup"]])
    d["by"] = {s["label"]: s for s in stmts}
    ops: dict[str, list[float]] = {}
    for r in res:
        for k, v in r["ops"].items():
            o = ops.setdefault(k, [0.0, 0])
            o[0] += v
            o[1] += r["calls"][k]
    d["ops"] = ops
    return d


def _rank(d: dict[str, Any], prefix: str) -> str:
    """'the dearest statement' / 'the 2nd dearest statement' by execution time."""
    order = [s["label"] for s in d["stmts"]]
    i = next((k for k, label in enumerate(order) if label.startswith(prefix)), None)
    if i is None:
        return "not sent"
    return "the dearest statement" if i == 0 else (
        f"the {i + 1}{'nd' if i == 1 else 'rd' if i == 2 else 'th'} dearest statement")


def _relabel(label: str) -> str:
    """Labels of statements pg_scale.stat_label did not know when the figures were taken."""
    if label.startswith("UPDATE urls SET status = $5 WHERE url = ANY"):
        return "record: lease links of owned hosts"
    return label


def share(d: dict[str, Any], *prefixes: str) -> float:
    """Share of the server's execution time spent in statements whose label starts so."""
    return sum(s["ms"] for s in d["stmts"] if s["label"].startswith(prefixes)) / d["exec_ms"]


def _stmt(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next((s for s in d["stmts"] if s["label"].startswith(prefix)),
                dict(calls=0, ms=0.0, rows=0, wal=0, read=0))


def _per_call(d: dict[str, Any], prefix: str) -> float:
    s = _stmt(d, prefix)
    return s["ms"] / s["calls"] if s["calls"] else 0.0


def _us_per_page(d: dict[str, Any], *prefixes: str) -> float:
    """Server execution µs per page of the statements whose label starts so."""
    return sum(s["ms"] for s in d["stmts"] if s["label"].startswith(prefixes)) / d["pages"] * 1e3


# -- the section ------------------------------------------------------------------------------

def render(fig: dict[str, Any]) -> str:
    part = fig["run"]
    d = derive(part)
    settings = fig["settings"]
    urls_total = fig["hosts"] * fig["per_host"]
    commit = fig.get("commit", {})
    out: list[str] = []
    add = out.append
    add("## crawler-pg-scale — the crawl frontier in PostgreSQL at "
        f"{n(urls_total)} URLs: the engine's calls without HTTP (issue 16)")
    add("")
    add(fig["machine"])
    add("")
    add("Command: `python -m bench.crawler.pg_scale` (in `make bench-crawler`; "
        "`FANMILL_BENCH_QUICK=1` shrinks it to 20,000 URLs and 5,000 pages)"
        + (" — **this is a QUICK run**" if fig["quick"] else "") + ". Crawler code: commit "
        f"{commit.get('head', '?')}"
        + (" with local changes in crawler/" if commit.get("crawler_dirty") else
           ", crawler/ clean")
        + ("" if fig.get("commit_end", commit) == commit else
           f" (at the end {fig['commit_end']['head']}, which changes only docstrings and "
           "comments of the crawler's engine and state)" if fig.get("code_same") else
           f" (**at the end: {fig['commit_end']['head']}"
           + (" with local changes" if fig["commit_end"]["crawler_dirty"] else "")
           + "** — the crawler changed during the run)")
        + "; the bench records the statements `PgShared` sends, it "
        "copies none. **The machine has 2 cores, shared by the server, the 4 worker processes "
        "and other engineers' jobs** (load average at start "
        f"{' '.join(fig['loadavg'])}; at the start and end of the main run "
        f"{' '.join(part['loadavg_run_start'])} and {' '.join(part['loadavg_run_end'])}): "
        "pages/s here is what a share of 2 cores does for client and server together; the "
        "transferable figures are CPU, statements and WAL bytes per page.")
    add("")
    add(f"Server: PostgreSQL {settings['server_version']}, a throwaway cluster from "
        "fixtures/postgres.py started with **fast=False (durable: fsync "
        f"{settings['fsync']}, synchronous_commit {settings['synchronous_commit']}, "
        f"full_page_writes {settings['full_page_writes']})**, every other setting the default "
        f"(shared_buffers {settings['shared_buffers']}, max_wal_size {settings['max_wal_size']}, "
        f"checkpoint_timeout {settings['checkpoint_timeout']}, wal_compression "
        f"{settings['wal_compression']}, jit {settings.get('jit', '?')}, autovacuum on with the "
        "tables' own scale factors from shared_pg.py), Unix socket. **pg_stat_statements** and "
        "auto_explain (plans of statements slower than 100 ms, to the server log) are loaded "
        "through `ALTER SYSTEM SET shared_preload_libraries` and a restart. Server CPU = user + "
        "system of the postmaster and all its children (backends, autovacuum, checkpointer, WAL "
        "writer, parallel workers; exited ones through the postmaster's cutime/cstime) from "
        "/proc; WAL = `pg_current_wal_lsn()` difference. Clients: asyncpg "
        f"{fig['versions']['asyncpg']} (the crawler's driver) through the crawler's own "
        f"`PgShared`, uvloop {fig['versions']['uvloop']} as `crawl` uses; **W={fig['w']} worker "
        "processes** (spawned, each its own connection and worker id); client CPU = each "
        "process's own CPU time over its loop, the bench's own work (making results and links, "
        "its in-memory queue) taken out.")
    add("")
    add("The frontier: " + n(urls_total) + f" URLs over {n(fig['hosts'])} hosts "
        f"({fig['per_host']} per host, `http://h{{i}}.example/p{{j}}`: strings only, nothing is "
        "fetched), added in shuffled order (a crawl finds a host's URLs over time) through "
        "`PgShared.add_discovered`, 10,000 per call; then VACUUM ANALYZE and CHECKPOINT. "
        "**A worker** (bench/crawler/pg_workload.py) runs the engine's dispatcher loop "
        "(engine.py `_dispatch` with engine_worker.py's hooks and constants) with fetches that "
        "answer at once, under the throughput options of section crawler-workers (`--delay 0 "
        f"--per-host {PER_HOST} --concurrency {CONCURRENCY}`) and the default window "
        f"({n(WINDOW)}) and lease ({LEASE_SECONDS:g} s): a **refill** when fewer than "
        f"{n(WINDOW // 2)} URLs are in memory and the state may hold some (after a commit that "
        f"sent new URLs, or every {POLL_SECONDS:g} s), at once when fewer than "
        f"{n(hungry_below())} are (the engine's `_hungry`), else at most every "
        f"{REFILL_EVERY * 1000:g} ms (the engine's REFILL_EVERY): `contents_since` if "
        f"{CONTENTS_EVERY:g} s have passed, `claim_hosts({K_HOSTS} − owned)`, "
        "`lease_urls(owned, window − in memory)`, "
        + (f"the fair-share check `share` (every {REBALANCE_EVERY:g} s; hosts beyond the share "
           "would leave memory and go back), " if REBALANCE_EVERY is not None else "")
        + "then `release` of owned hosts that got no URL and had nothing in memory for "
        f"{RELEASE_AFTER:g} s; otherwise a **commit**: {COMMIT_BATCH} URLs from memory (round "
        "robin over hosts) \"fetched\" and their results sent in one `record_results` (the "
        f"engine commits what finished while the last commit ran; {COMMIT_BATCH} = the "
        "connections' worth is this bench's assumption, and statements per page scale with "
        "it); with nothing in memory and nothing due, the **idle wait**: `release` of every "
        f"idle owned host, `outstanding`, {POLL_SECONDS:g} s of sleep; and a **heartbeat** "
        f"task, `renew(owned)` every {LEASE_SECONDS / 3:g} s, with no host owned too. No URL "
        "list is loaded for a claimed host (the engine no longer does). Results: 97% fetched "
        f"with a {n(part['record_bytes'] or 0)}-byte JSON record shaped like "
        "`CrawlRecord.as_dict()` and 10 links (9 to URLs already known, at random over the "
        "frontier, 1 new URL on a random host), 2% failed (no links), 1% retryable in 10 "
        "minutes; content digests for half the pages. As the engine's admission does, a "
        "worker sends only the links new to its own seen-URL index (the URLs it found itself; "
        "a URL leased from the state is not in it) or found at a smaller depth, and those of "
        "hosts it owns are leased by the same commit (`record_results(…, lease=)`) and "
        "queued at once. The run stops at "
        f"{n(fig['target'])} pages recorded (a page = one URL's result committed), not at a "
        "time: from there a worker leases no more (no refill, no link leased by a commit) and "
        "commits what it holds in memory, so "
        "every URL leased is recorded once and the per-page figures count each lease once.")
    add("")
    p = PREVIOUS
    add(f"This section's previous run (code of {p['commit']}, another cycle: 16 hosts per "
        "worker, 256-URL leases, every claimed host's URL list loaded) measured "
        f"{n(p['srv_as_is'], 1)} µs of server CPU per page as the code was and "
        f"{n(p['srv_fixed'], 1)} µs with two bench-only fixes (an index for that URL list; "
        "hosts made due only by links that added a URL), the claim at "
        f"{n(p['claim_1m'])} ms with 1,000,000 hosts and the lease at {n(p['lease_10k'])} ms "
        "with 10,000 URLs per owned host. Commit c8dbb3f and after took the second fix, "
        "dropped the URL list, and took the bench's rewrites of the claim and the lease; "
        "this run measures the result, with the engine's new loop.")
    add("")
    add(_load_part(part))
    add(_run_part(fig, d))
    add(_statements_part(d))
    add(_sizes_part(d))
    add(_dead_part(part, d))
    add(_plans_part(fig, part))
    add(_scaling_part(fig))
    add(_drivers_part(fig))
    add(_capacity_part(fig, d))
    add(_findings_part(fig, d))
    return "\n".join(out)


def _load_part(part: dict[str, Any]) -> str:
    load = part["load"]
    rows = [[n(load["urls"]), n(load["seconds"], 1), n(load["urls"] / load["seconds"]),
             n(load["server_cpu"] / load["urls"] * 1e6, 1),
             n(load["client_cpu"] / load["urls"] * 1e6, 1), n(load["wal"] / load["urls"])]]
    return ("**Loading the frontier** through `add_discovered`, one process:\n\n"
            + table(["URLs", "wall s", "URLs/s", "server CPU µs/URL", "client CPU µs/URL",
                     "WAL bytes/URL"], rows, "rrrrrr") + "\n")


def _run_part(fig: dict[str, Any], d: dict[str, Any]) -> str:
    pages = d["pages"]
    busy = d["worker_wall"]
    rows = [
        ["pages recorded (results committed)", n(pages)],
        ["wall s (go → last worker's stop)", n(d["wall"], 1)],
        ["**pages/s** (2 shared cores, client + server)", f"**{n(d['pages_s'])}**"],
        ["**PostgreSQL server CPU µs per page**", f"**{n(d['srv_us'], 1)}**"],
        ["**client CPU µs per page** (· with the bench's own work)",
         f"**{n(d['cli_us'], 1)}** · {n(d['cli_all_us'], 1)}"],
        ["**WAL bytes per page**", f"**{n(d['wal_b'])}**"],
        ["**statements per page**, client count (BEGIN/COMMIT included)",
         f"**{n(d['client_stmts'], 3)}**"],
        ["statements per page, pg_stat_statements (BEGIN/COMMIT included)",
         n(d["server_calls"] / pages, 3)],
        ["server execution time per page (pg_stat_statements)",
         f"{n(d['exec_ms'] / pages * 1000, 1)} µs"],
        ["commits (`record_results`) · pages per commit",
         f"{n(d['commits'])} · {n(pages / max(d['commits'], 1), 1)}"],
        ["leases (`lease_urls`) · per 1,000 pages · median URLs per lease",
         f"{n(d['leases'])} · {n(d['leases'] / pages * 1000, 1)} · {n(d['lease_median'])}"],
        ["· leases of ≥ 1,000 URLs · of 1–99 · of none",
         f"{n(d['lease_big'])} · {n(d['lease_small'])} · {n(d['empty_leases'])}"],
        ["URLs leased (by refills and by commits) · per page recorded",
         f"{n(d['leased'])} · {n(d['leased'] / pages, 2)}"],
        ["claims sent · that got hosts · hosts claimed (median per claim that got any)",
         f"{n(d['claim_calls'])} · {n(d['claim_nonzero'])} · {n(d['claims'])} "
         f"({n(d['claim_median'])})"],
        ["releases · hosts released", f"{n(d['released_calls'])} · {n(d['released'])}"],
        ["fair-share checks (`share`) · their median answer · hosts drained beyond it",
         f"{n(d['share_calls'])} · {n(d['share_median'])} · {n(d['drained'])}"],
        ["idle waits · time asleep in them (share of the workers' time)",
         f"{n(d['idle_waits'])} · {n(d['idle_s'], 1)} s ({d['idle_s'] / busy:.1%})"],
        ["links per page: found · sent (new to the worker's index) · new to the state",
         f"{n(d['links_found'] / pages, 1)} · {n(d['links'] / pages, 1)} · "
         f"{n(d['new_urls'] / pages, 2)}"],
        ["links of owned hosts leased in the commit: asked · leased",
         f"{n(d['direct'])} · {n(d['direct_leased'])}"],
        ["results refused (token) · hosts lost", f"{n(d['refused'])} · {n(d['lost'])}"],
    ]
    out = [f"**{fig['w']} workers until {n(fig['target'])} pages** (asyncpg, durable server):",
           "", table(["", "shared_pg.py"], rows, "lr"), ""]
    rows = []
    total = sum(v[0] for v in d["ops"].values())
    for k in sorted(d["ops"], key=lambda k: -d["ops"][k][0]):
        t, c = d["ops"][k]
        if not c:
            continue
        rows.append([k, n(c), n(c / pages * 1000, 1), n(t / c * 1000, 2), f"{t / total:.0%}"])
    out += ["Per call as the workers saw it (wall time of the awaited call, all workers):", "",
            table(["call", "calls", "per 1,000 pages", "mean ms", "share of time in calls"],
                  rows), ""]
    return "\n".join(out)


def _statements_part(d: dict[str, Any]) -> str:
    rows = []
    for s in d["stmts"]:
        rows.append([s["label"], n(s["calls"] / d["pages"] * 1000, 1),
                     n(s["ms"] / s["calls"], 2) if s["calls"] else "–",
                     n(s["ms"] / d["pages"] * 1000, 1), f"{s['ms'] / d['exec_ms']:.1%}",
                     n(s["wal"] / d["pages"]), n(s["rows"] / s["calls"], 1) if s["calls"] else "–",
                     n(s["read"] / d["pages"], 2)])
    return ("**Where the server's time goes** (pg_stat_statements over the run: execution time "
            "only, not parse/bind/network; blocks read = from outside shared_buffers):\n\n"
            + table(["statement", "calls per 1,000 pages", "mean ms", "exec µs per page",
                     "share of exec time", "WAL B/page", "rows per call",
                     "blocks read per page"], rows) + "\n")


def _sizes_part(d: dict[str, Any]) -> str:
    rows = []
    for k in d["s1"]:
        a0, a1 = d["s0"].get(k), d["s1"][k]
        rows.append([k[0], k[1], mib(a0) if a0 is not None else "–", mib(a1),
                     n((a1 - (a0 or 0)) / d["pages"])])
    return ("**Sizes** (MiB) after the load + VACUUM (start) and after the run (end); growth in "
            "bytes per page recorded:\n\n"
            + table(["relation", "what", "start", "end", "growth B/page"], rows, "llrrr") + "\n")


def _dead_part(part: dict[str, Any], d: dict[str, Any]) -> str:
    out = ["**Live and dead tuples over the run** (pg_stat_user_tables, sampled every 3 s; "
           "autovacuum = runs since the start of the run):", ""]
    run = part["run"]
    samples = run["samples"]
    step = max(1, -(-len(samples) // 12))
    picked = samples[::step]
    if samples and picked[-1] is not samples[-1]:
        picked.append(samples[-1])
    st0 = run["stats0"]
    rows = []
    for smp in picked + [dict(t=run["elapsed"], pages=run["pages"], stats=run["stats1"],
                              wal=run["wal"], server_cpu=run["server_cpu"], final=True)]:
        u, h = smp["stats"]["urls"], smp["stats"]["hosts"]
        rows.append([("end" if smp.get("final") else n(smp["t"], 0)), n(smp["pages"]),
                     n(u["n_live_tup"]), n(u["n_dead_tup"]),
                     u["autovacuum_count"] - st0["urls"]["autovacuum_count"],
                     n(h["n_live_tup"]), n(h["n_dead_tup"]),
                     h["autovacuum_count"] - st0["hosts"]["autovacuum_count"],
                     mib(smp["wal"]), n(smp["server_cpu"], 1)])
    out += [table(["t s", "pages", "urls live", "urls dead", "urls autovacuum", "hosts live",
                   "hosts dead", "hosts autovacuum", "WAL MiB", "server CPU s"], rows), ""]
    out.append(f"urls updates {n(d['upd_u'])} ({n(d['upd_u'] / d['pages'], 2)} per page), HOT "
               f"{d['hot_u'] / max(d['upd_u'], 1):.0%}; hosts updates {n(d['upd_h'])}, HOT "
               f"{d['hot_h'] / max(d['upd_h'], 1):.0%}. URL statuses at the end: "
               + ", ".join(f"{k} {n(v)}" for k, v in sorted(part["status"].items()))
               + f"; hosts with a due time: {n(part['hosts_left'])}.")
    out.append("")
    return "\n".join(out)


def _plans_part(fig: dict[str, Any], part: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    add(f"**Plans on the {n(fig['hosts'] * fig['per_host'])}-URL table.** The statements of a "
        f"worker of its own (`contents_since`, a claim of {K_HOSTS} hosts, a lease of "
        f"{n(fig['lease_room'])}, a commit of {COMMIT_BATCH} results, a second lease, the "
        "release, an idle wait's `outstanding`, a start's `redirects`) under EXPLAIN (ANALYZE, "
        "BUFFERS) in a savepoint rolled back, before the run (after the load) and after it; "
        "each with its arguments (a custom plan, as a prepared statement's first 5 executions "
        "get) and as a generic plan (PREPARE + plan_cache_mode = force_generic_plan), since the "
        "server may keep a generic plan from the 6th execution (pg_prepared_statements of the "
        "workers' connections: " + _generic_counts(part) + "). Execution ms:")
    add("")
    cols = [_keyed(c) for c in (part["plans0"]["custom"], part["plans0"]["generic"],
                                part["plans1"]["custom"], part["plans1"]["generic"])]
    keys = list(cols[0]) + [k for c in cols[1:] for k in c if k not in cols[0]]
    rows, seen = [], set()
    for key in keys:
        if key in seen or key[0] in ("join", "leave"):
            continue
        seen.add(key)
        rows.append([key[0] + ("" if key[1] == 0 else f" (#{key[1] + 1})")]
                    + [n(exec_ms(c[key]), 2) if key in c else "–" for c in cols])
    add(table(["statement", "before: custom", "before: generic", "after: custom",
               "after: generic"], rows))
    add("")
    leased = [_rows_of(_plan(part[k]["custom"], "lease_urls")) for k in ("plans0", "plans1")]
    claimed = [_rows_of(_plan(part[k]["custom"], "claim_hosts")) for k in ("plans0", "plans1")]
    add(f"The explained claim took {claimed[0]} hosts before the run and {claimed[1]} after it; "
        f"its first lease {leased[0]} and {leased[1]} URLs (after the run, the hosts first in "
        "line are those new links made due again, holding a few URLs each).")
    add("")
    for prefix, nth, title in (
            ("claim_hosts", 0, "claim_hosts"), ("lease_urls", 0, "lease_urls (first lease)"),
            ("lease_urls", 1, "lease_urls (second lease: the claimed hosts' URLs in flight)"),
            ("record (links): INSERT urls", 0, "record (links): INSERT urls ON CONFLICT"),
            ("outstanding: counts", 0, "outstanding"), ("redirects", 0, "redirects")):
        plan = _plan(part["plans1"]["generic"], prefix, nth)
        if plan:
            add(details(f"{title}: plan after the run (generic)", plan))
    slow = part.get("slow", [])
    if slow:
        by: dict[str, list[float]] = {}
        for e in slow:
            by.setdefault(e["label"], []).append(e["ms"])
        add(f"auto_explain over the run: {len(slow)} statement(s) slower than 100 ms: "
            + "; ".join(f"{k} ×{len(v)} (median {n(statistics.median(v))} ms, max "
                        f"{n(max(v))})" for k, v in
                        sorted(by.items(), key=lambda kv: -len(kv[1]))) + ".")
    else:
        add("auto_explain over the run: no statement slower than 100 ms.")
    add("")
    return "\n".join(out)


def _keyed(plans: list[list[str]]) -> dict[tuple[str, int], str]:
    """{(label, occurrence): plan}: a statement sent twice in a cycle keeps both."""
    out: dict[tuple[str, int], str] = {}
    for label, plan in plans:
        k = 0
        while (label, k) in out:
            k += 1
        out[(label, k)] = plan
    return out


def _generic_counts(part: dict[str, Any]) -> str:
    from bench.crawler.pg_scale import stat_label

    tot: dict[str, list[int]] = {}
    for r in part["run"]["results"]:
        for sql, generic, custom in r["plans"]:
            label = stat_label(sql)
            if label.startswith(("claim_hosts", "lease_urls", "record (links): INSERT urls",
                                 "outstanding")):
                t = tot.setdefault(label.split(":")[0] if ":" in label else label, [0, 0])
                t[0] += generic
                t[1] += custom
    return ", ".join(f"{k} {n(g)} generic / {n(c)} custom" for k, (g, c) in sorted(tot.items()))


def _scaling_part(fig: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    add("**How the claim, the lease and the frontier-wide statements grow.** Each alone on a "
        "database of its own; the statement is the one `PgShared` sends (recorded from a real "
        "call), executed 25 times through one asyncpg connection (prepared: the server may "
        "switch to a generic plan from the 6th), median of the last 10 (the first execution "
        "in brackets), and its EXPLAIN ANALYZE. **The claim**: "
        f"k={K_HOSTS} by a worker owning nothing, against N due, free hosts (the claimed ones "
        "freed after each execution, their due time kept), with 4 live workers; at the largest "
        f"N also with 200 (a {MACHINES}-machine crawl), and with only "
        f"{fig['claim_sparse']:.0%} of the hosts holding work (the others drained, no due "
        "time: late in a crawl).")
    add("")
    rows = []
    for c in fig["claim_scaling"]:
        rows.append([n(c["n"]), n(c["with_work"]), c["workers"],
                     f"{n(c['median_ms'], 2)} ({n(c['first_ms'], 1)})", n(c["exec_ms"], 2),
                     ", ".join(str(x) for x in c["hosts_claimed"])])
    add(table(["hosts", "with work", "live workers", "claim ms", "its EXPLAIN ANALYZE ms",
               "hosts claimed per call"], rows))
    add("")
    ls = fig["lease_scaling"]
    add(f"**The lease**: {K_HOSTS} owned hosts × M due URLs each (depths 0–4), room "
        f"{n(fig['lease_room'])} (the window half empty; `PgShared` passes a per-host share of "
        f"max(16, ceil(room / hosts)) = {ls[0]['share'] if ls else '?'}), in a urls table that "
        f"also holds {n(fig['lease_background'])} fetched URLs of other hosts; the leased URLs "
        "put back (not timed) after each execution. Then the same lease when nothing of the "
        "owned hosts is due: all their URLs retryable in 10 minutes (a refill while owned "
        "hosts' URLs wait for a retry).")
    add("")
    rows = []
    for c in ls:
        x, y = c["due"], c["none_due"]
        rows.append([n(c["m"]), n(K_HOSTS * c["m"]), n(x["rows"]),
                     f"{n(x['median_ms'], 2)} ({n(x['first_ms'], 1)})", n(x["exec_ms"], 2),
                     n(x["median_ms"] / max(x["rows"], 1) * 1000, 1),
                     f"{n(y['median_ms'], 2)} ({n(y['first_ms'], 1)})", n(y["exec_ms"], 2)])
    add(table(["due URLs per owned host", "due URLs of the owned hosts", "URLs leased",
               "lease ms", "its EXPLAIN ANALYZE ms", "µs per URL leased",
               "lease, none due: ms", "its EXPLAIN ANALYZE ms"], rows))
    add("")
    fs = fig.get("frontier_scaling", [])
    if fs:
        add("**`outstanding` and `redirects`**: N waiting URLs over N / 100 due hosts, and "
            "N / 4 fetched URLs with a ~450-byte record each; 7 calls through `PgShared`, "
            "median of the last 5. `outstanding` is sent at every idle wait of every worker "
            "(and by `crawl status`), `redirects` at every worker's start.")
        add("")
        rows = []
        for c in fs:
            o, r = c["outstanding"], c["redirects"]
            rows.append([n(c["n"]), n(c["n"] * 5 // 4),
                         f"{n(o['median_ms'], 1)} ({n(o['first_ms'], 1)})", n(o["exec_ms"], 1),
                         f"{n(r['median_ms'], 1)} ({n(r['first_ms'], 1)})", n(r["exec_ms"], 1)])
        add(table(["waiting URLs", "URL rows", "outstanding ms", "its EXPLAIN ANALYZE ms",
                   "redirects ms", "its EXPLAIN ANALYZE ms"], rows))
        add("")
    big_c = max(fig["claim_scaling"], key=lambda c: c["median_ms"])
    plans = [(f"claim at {n(big_c['n'])} hosts, {n(big_c['with_work'])} with work, "
              f"{big_c['workers']} live workers (the slowest case)", big_c["plan"])]
    if ls:
        plans += [(f"lease at {n(ls[-1]['m'])} URLs per host", ls[-1]["due"]["plan"]),
                  (f"lease at {n(ls[-1]['m'])} URLs per host, none due",
                   ls[-1]["none_due"]["plan"])]
    if fs:
        plans += [(f"outstanding at {n(fs[-1]['n'])} waiting URLs", fs[-1]["outstanding"]["plan"]),
                  (f"redirects at {n(fs[-1]['n'])} waiting URLs", fs[-1]["redirects"]["plan"])]
    for title, plan in plans:
        add(details(f"{title}: EXPLAIN ANALYZE (custom plan)", plan))
    return "\n".join(out)


def _drivers_part(fig: dict[str, Any]) -> str:
    runs = fig["drivers"]
    if not runs:
        return ""
    out: list[str] = []
    add = out.append
    drv = fig["drv"]
    rounds = 1 + max(r["round"] for r in runs)
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault((r["driver"], r["workers"]), []).append(r)
    add(f"**asyncpg against psycopg 3 (async), same loop.** {rounds} round(s), the order rotated "
        f"each round, each run on a fresh database ({n(drv['hosts'])} hosts × "
        f"{drv['per_host']} = {n(drv['hosts'] * drv['per_host'])} URLs, loaded with asyncpg, "
        f"VACUUM ANALYZE, CHECKPOINT) until {n(drv['pages'])} pages. psycopg "
        f"{fig['versions']['psycopg']} runs PgShared's own methods over an adapter "
        "(bench/crawler/pg_psycopg.py) that translates each `$n` statement to psycopg's named "
        "placeholders (once per statement text) and passes arrays as lists: the SQL and the "
        "Python around it are the crawler's, and the port cannot drift from shared_pg.py. "
        "\"psycopg\" is psycopg's default (text parameters and results); \"psycopg binary\" "
        "passes `%b` parameters and asks binary results. psycopg's C implementation "
        "(psycopg_binary) is in use; psycopg prepares a statement server-side from its 5th "
        "execution, asyncpg from its 1st. Medians over rounds; client CPU without the bench's "
        "own work.")
    add("")
    rows = []
    med: dict[tuple[str, int], dict[str, float]] = {}
    for (driver, w), rs in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ps = statistics.median(r["pages"] / r["wall"] for r in rs)
        cli = statistics.median((r["client_cpu"] - r["gen"]) / r["pages"] * 1e6 for r in rs)
        srv = statistics.median(r["server_cpu"] / r["pages"] * 1e6 for r in rs)
        med[(driver, w)] = dict(ps=ps, cli=cli, srv=srv)
        rows.append([driver.replace("-", " "), w, len(rs), n(ps),
                     ", ".join(n(r["pages"] / r["wall"]) for r in rs), n(cli, 1),
                     ", ".join(n((r["client_cpu"] - r["gen"]) / r["pages"] * 1e6) for r in rs),
                     n(srv, 1),
                     ", ".join(n(r["server_cpu"] / r["pages"] * 1e6) for r in rs)])
    add(table(["driver", "W", "runs", "pages/s (median)", "pages/s (each run)",
               "client CPU µs/page (median)", "(each run)", "server CPU µs/page (median)",
               "(each run)"], rows, "lrrrrrrrr"))
    add("")
    lines = []
    for w in sorted({k[1] for k in med}):
        x = med.get(("asyncpg", w))
        if not x:
            continue
        for drv_name in ("psycopg", "psycopg-binary"):
            y = med.get((drv_name, w))
            if y:
                lines.append(f"W={w}: asyncpg {x['ps'] / y['ps']:.2f}× the pages/s of "
                             f"{drv_name.replace('-', ' ')}, which takes "
                             f"{y['cli'] / x['cli']:.2f}× asyncpg's client CPU per page "
                             f"({n(y['cli'], 1)} against {n(x['cli'], 1)} µs) and "
                             f"{y['srv'] / x['srv']:.2f}× its server CPU per page")
    add("Ratios: " + "; ".join(lines) + ".")
    add("")
    ws = sorted({k[1] for k in med})
    try:
        ps = [med[("asyncpg", w)]["ps"] / med[("psycopg", w)]["ps"] for w in ws]
        cpu = [med[("psycopg", w)]["cli"] / med[("asyncpg", w)]["cli"] for w in ws]
        bps = [med[("asyncpg", w)]["ps"] / med[("psycopg-binary", w)]["ps"] for w in ws]
        bcpu = [med[("psycopg-binary", w)]["cli"] / med[("asyncpg", w)]["cli"] for w in ws]
        bsrv = [med[("psycopg-binary", w)]["srv"] / med[("asyncpg", w)]["srv"] for w in ws]
    except KeyError:
        return "\n".join(out)

    def span(xs: list[float], digits: int = 2) -> str:
        lo, hi = f"{min(xs):.{digits}f}", f"{max(xs):.{digits}f}"
        return lo if lo == hi else f"{lo}–{hi}"

    # run-to-run spread of one configuration: the largest max/min of pages/s over its rounds
    spread = max(max(r["pages"] / r["wall"] for r in rs) / min(r["pages"] / r["wall"] for r in rs)
                 for rs in by.values())
    tie = all(1 / spread <= x <= spread for x in bps + bcpu + bsrv)
    default_worse = all(x > spread for x in ps) and all(x > 1.5 for x in cpu)
    if default_worse and tie:
        verdict = "asyncpg (the crawler’s driver) stays"
        why = ("a tie, within this machine's run-to-run spread (one configuration's pages/s "
               f"varied up to {spread:.2f}× over the rounds): switching buys nothing "
               "measurable, and the server's CPU, not the driver, bounds the shared state")
    elif default_worse and all(x > 1 for x in bps):
        verdict = "asyncpg (the crawler’s driver) stays"
        why = "psycopg's binary mode does not reach it either"
    else:
        verdict = "mixed, see the ratios"
        why = "runs on this shared machine vary: read the ratios before deciding"
    loads = [r.get("loadavg") for r in runs if r.get("loadavg")]
    add(f"**Verdict: {verdict}.** asyncpg gives {span(ps)}× the pages/s of psycopg's default, "
        f"which takes {span(cpu, 1)}× its client CPU per page; psycopg with binary parameters "
        f"and results takes {span(bcpu)}× asyncpg's client CPU and {span(bsrv)}× its server "
        f"CPU per page and gives {span([1 / x for x in bps])}× its pages/s "
        f"(W={' and W='.join(map(str, ws))}): {why}."
        + (" Load average (1 min) at the end of each run: "
           + ", ".join(load[0] for load in loads) + "." if loads else ""))
    add("")
    return "\n".join(out)


FRONTIER_WIDE = ("outstanding", "redirects")  # statements whose cost grows with the frontier


def _capacity_part(fig: dict[str, Any], d: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    front = share(d, *FRONTIER_WIDE)
    srv = d["srv_us"] * (1 - front)  # the loop's own server CPU per page
    wal = d["wal_b"]
    add("**Capacity, on paper from these figures.** Assumptions, stated: the PostgreSQL "
        "server's CPU per page is the bound (every server process counted: backends, "
        "autovacuum, checkpointer, WAL writer); it scales linearly with cores (an upper bound: "
        "no lock, WAL-insertion or buffer contention counted); a server core is one core of "
        "this VM's Xeon; the workload is this one (10 links found per page of which 1 new, "
        f"{COMMIT_BATCH} results per commit, hosts of {fig['per_host']} URLs, a frontier of "
        f"{n(fig['hosts'] * fig['per_host'])} URLs whose tables fit in RAM); no autovacuum "
        "pass over urls finished within the run (finding 4), so a long crawl pays those on "
        f"top. The run's {n(d['srv_us'], 1)} µs of server CPU per page include `outstanding` "
        f"({front:.1%} of the server's execution time, finding 3), whose cost grows with the "
        "frontier and with how often workers run dry, not with pages: taken out in proportion "
        f"to execution time, **the loop itself costs ~{n(srv)} µs per page**, the basis of the "
        "tables below; `outstanding` is counted apart after them.")
    add("")
    rows = []
    for label, cores in [("1 core", 1), ("2 cores (this machine, all to the server)", 2)] + [
            (f"{c} cores", c) for c in SERVER_CORES]:
        rows.append([label, n(cores * 1e6 / srv), mib(cores * 1e6 / srv * wal) + " MiB/s",
                     f"{cores * 1e6 / srv / PER_MACHINE[1]:.1f}–"
                     f"{cores * 1e6 / srv / PER_MACHINE[0]:.1f}"])
    add(table(["one PostgreSQL server with", f"pages/s it can feed (1e6 / {n(srv)} µs × cores)",
               f"WAL it then writes ({n(wal)} B/page)",
               f"crawl machines at {n(PER_MACHINE[1])}–{n(PER_MACHINE[0])} pages/s"], rows))
    add("")
    lo, hi = (MACHINES * p for p in PER_MACHINE)
    workers = MACHINES * WORKERS_PER_MACHINE
    contents_per_page = d["by"].get("record: INSERT contents", {}).get("rows", 0) / d["pages"]
    add(f"A {MACHINES}-machine crawl at {n(PER_MACHINE[0])}–{n(PER_MACHINE[1])} pages/s per "
        f"machine (the single-process `crawl` did {n(CRAWL_PAGES_S)} useful pages/s on the nginx "
        f"throughput site, the plain aiohttp loop {n(LOOP_PAGES_S)}; section crawler-nginx) "
        f"needs {n(lo)}–{n(hi)} pages/s from the state, with {workers} workers "
        f"({WORKERS_PER_MACHINE} per machine):")
    add("")
    rows = []
    for ps in (lo, hi):
        rows.append([n(ps), n(ps * srv / 1e6), mib(ps * wal) + " MiB/s",
                     n(ps * d["server_calls"] / d["pages"]),
                     n(ps * d["commits"] / d["pages"]),
                     n(ps * d["growth"] * 86400 / 2**40, 1) + " TiB",
                     n(ps * contents_per_page * workers / 1e6, 1) + " M"])
    add(table(["pages/s", "server cores busy (the loop)", "WAL", "statements/s",
               "transactions with results/s", "table + index growth per day",
               f"digest rows read per second by {workers} workers (contents_since)"], rows))
    add("")
    add(f"Arithmetic: cores = pages/s × server µs per page / 10⁶, e.g. {n(lo)} × "
        f"{n(srv)} µs = {n(lo * srv / 1e6)} cores and {n(hi)} × {n(srv)} µs = "
        f"{n(hi * srv / 1e6)}; one server core feeds 10⁶ / {n(srv)} = {n(1e6 / srv)} pages/s, "
        f"i.e. {1e6 / srv / PER_MACHINE[1]:.2f}–{1e6 / srv / PER_MACHINE[0]:.2f} crawl "
        f"machines at {n(PER_MACHINE[1])}–{n(PER_MACHINE[0])} pages/s. WAL = pages/s × "
        f"{n(wal)} B: {mib(lo * wal)}–{mib(hi * wal)} MiB/s, written by one WAL writer with "
        "an fsync per group commit, and the same pages again at checkpoints (a replica "
        f"doubles the network). Growth = pages/s × {n(d['growth'])} B of table + index per "
        f"page × 86,400 s. Digest rows: every worker reads every digest (`contents_since`, "
        f"now every {CONTENTS_EVERY:g} s instead of at every lease: fewer statements, the same "
        f"rows), {n(contents_per_page, 2)} per page × pages/s × {workers} workers. On the "
        f"client side the shared state costs each crawl machine {n(d['cli_us'], 1)} µs of CPU "
        f"per page (this bench's workers), {d['cli_us'] / CRAWL_CPU_US:.0%} on top of "
        f"`crawl`'s {n(CRAWL_CPU_US)} µs per page with its SQLite state.")
    add("")
    big = SERVER_CORES[-1]
    need = [ps * srv / 1e6 / big for ps in (lo, hi)]
    add(f"So, for the loop: one {big}-core server of this kind feeds at most "
        f"{n(big * 1e6 / srv)} pages/s (linear scaling assumed), "
        f"{big * 1e6 / srv / PER_MACHINE[1]:.0f}–{big * 1e6 / srv / PER_MACHINE[0]:.0f} crawl "
        f"machines; a {MACHINES}-machine crawl needs {need[0]:.1f}–{need[1]:.1f} such servers' "
        f"CPU and {mib(lo * wal)}–{mib(hi * wal)} MiB/s of WAL. Every statement of the loop is "
        "keyed by host (origin) except the digests, `outstanding`, `redirects` and the "
        "workers table, so the frontier splits by host hash over several servers, each with "
        "its own WAL; the digests and the frontier-wide statements are what does not split.")
    add("")
    fs = fig.get("frontier_scaling", [])
    if fs:
        big_o = fs[-1]
        per_m = big_o["outstanding"]["median_ms"] / (big_o["n"] / 1e6)
        per_m_r = big_o["redirects"]["median_ms"] / (big_o["n"] * 5 / 4 / 1e6)
        rate = d["idle_waits"] / d["pages"]
        add(f"**`outstanding` apart**, extrapolated linearly from the scaling table "
            f"({n(per_m)} ms per million waiting URLs at {n(big_o['n'])}; "
            f"{n(_per_call(d, 'outstanding: counts'))} ms per call in the run, on "
            f"~{n(fig['hosts'] * fig['per_host'] / 1e6, 1)} million waiting URLs and the dead "
            f"tuples of the run): this run sent it {n(rate * 1e6)} times per million pages "
            f"({n(d['idle_waits'])} idle waits), so at {n(lo)}–{n(hi)} pages/s that is "
            f"{n(rate * lo)}–{n(rate * hi)} calls/s: with a 1-million-URL frontier "
            f"~{n(rate * lo * per_m / 1000)}–{n(rate * hi * per_m / 1000)} server cores "
            f"counting, with 100 million ~{n(rate * lo * per_m * 100 / 1000)}–"
            f"{n(rate * hi * per_m * 100 / 1000)} (one call ~{n(per_m * 100 / 1000)} s). How "
            "often workers run dry depends on hosts' sizes and the fetch rate (finding 8), so "
            "the rate is this workload's; the point is that each call is O(frontier). Each "
            "worker start also reads the whole urls table for `redirects` "
            f"(~{n(per_m_r * 125 / 1000)} s at 125 million rows) and every digest of the "
            "crawl (`contents_since` from 0).")
        add("")
    return "\n".join(out)


def _findings_part(fig: dict[str, Any], d: dict[str, Any]) -> str:
    cs, ls, fs = fig["claim_scaling"], fig["lease_scaling"], fig.get("frontier_scaling", [])
    pages = d["pages"]
    p = PREVIOUS
    out = ["**Findings** (shared_pg.py is not changed by this bench; each point with the figure "
           "that shows it):", ""]
    add = out.append
    base = [c for c in cs if c["workers"] == cs[0]["workers"] and c["with_work"] == c["n"]]
    add(f"1. **What the changes bought.** {n(d['srv_us'], 1)} µs of server CPU per page "
        f"(previous run: {n(p['srv_as_is'], 1)} as the code was, {n(p['srv_fixed'], 1)} with "
        "the fixes since adopted; another loop, so compare with care): no URL list per claim, "
        "hosts made due only by new URLs, and the claim flat in the number of hosts ("
        + ", ".join(f"{n(c['median_ms'], 2)} ms at {n(c['n'])}" for c in base)
        + f" hosts; previously {n(p['claim_1m'])} ms at 1,000,000). "
        f"{n(d['client_stmts'], 3)} statements and {n(d['wal_b'])} WAL bytes per page; "
        f"{n(d['cli_us'], 1)} µs of client CPU per page.")
    links = share(d, "record (links): INSERT urls", "record (links): move up")
    moved = _stmt(d, "record (links): move up")["rows"]
    add(f"2. **Links are the main cost: two primary-key probes per link sent.** The link "
        f"INSERT … ON CONFLICT DO NOTHING and the move-up UPDATE take {links:.0%} of the "
        "execution time "
        f"({n(_us_per_page(d, 'record (links): INSERT urls', 'record (links): move up'))} µs "
        f"per page) for {n(d['links'] / pages, 1)} links sent per page (of "
        f"{n(d['links_found'] / pages, 1)} found: the worker's own index drops those it found "
        f"before), of which {n(d['new_urls'] / pages, 2)} new to the state; the move-up "
        f"changed {n(moved)} rows in the whole run. The INSERT also read "
        f"{n(_stmt(d, 'record (links): INSERT urls')['read'] / pages, 1)} blocks per page from "
        f"outside shared_buffers ({fig['settings']['shared_buffers']}; urls and its indexes "
        f"reached {mib(d['s1'].get(('urls', 'total (heap + TOAST + indexes)'), 0))} MiB): "
        "random probes of the primary key, which a frontier larger than RAM turns into disk "
        "reads. The two statements are deliberate (`ON "
        "CONFLICT DO UPDATE` would lock rows other workers own); the lever is sending fewer "
        "known links: a worker's index holds only what it found itself, not what the state "
        "holds (the frontier it did not find, other workers' finds, the URLs it leased), and "
        "those are most of what it sends.")
    if fs:
        o0, o1 = fs[0]["outstanding"], fs[-1]["outstanding"]
        r1 = fs[-1]["redirects"]
        plans1 = fig["run"]["plans1"]["custom"]
        cont0 = exec_ms(_plan(plans1, "contents_since"))
        add(f"3. **`outstanding` counts the whole frontier, at every idle wait of every "
            f"worker.** `count(*) FROM urls WHERE status IN ('discovered', 'fetching')` and "
            "`min(next_try)` of the retryable ones are sequential scans of urls: "
            f"{n(o0['median_ms'], 1)} ms at {n(fs[0]['n'])} waiting URLs, "
            f"{n(o1['median_ms'])} ms at {n(fs[-1]['n'])}; in the run "
            f"{n(d['idle_waits'])} calls took {share(d, 'outstanding'):.0%} of the server's "
            f"execution time ({n(_per_call(d, 'outstanding: counts'))} ms each), "
            + _rank(d, "outstanding") + ". The engine needs only whether anything is left (and the "
            "earliest retry when nothing is): an `EXISTS` would stop at the first row. Two "
            "more reads of the whole crawl come with every worker start: `redirects`, a "
            f"sequential scan of urls with a LIKE on each record ({n(r1['median_ms'])} ms at "
            f"{n(fs[-1]['n'] * 5 // 4)} rows), and `contents_since` from 0 (every digest: "
            f"{n(cont0)} ms for the run's digests in the plan after it).")
    lease = _stmt(d, "lease_urls")
    rec = _stmt(d, "record: UPDATE urls results")
    n_live = fig["run"]["run"]["stats1"]["urls"]["n_live_tup"]
    threshold = 50 + 0.05 * n_live
    add(f"4. **Every page rewrites its URL row twice, never HOT** "
        f"({d['hot_u'] / max(d['upd_u'], 1):.0%} HOT of {n(d['upd_u'] / pages, 2)} urls "
        "updates per page): the lease (→ fetching) and `record_results` (→ fetched, with the "
        f"~{n(fig['run']['record_bytes'] or 0)}-byte record) both change `status`, which "
        "urls_origin_due's predicate reads, so each writes a new heap tuple and an entry in "
        f"every index: {n(lease['wal'] / pages)} + {n(rec['wal'] / pages)} WAL bytes per page "
        f"of {n(d['wal_b'])}, {n(d['growth'])} bytes of table and index growth per page. urls "
        f"had {n(d['max_dead_u'])} dead tuples at the end and autovacuum finished "
        f"{d['autovac_u']} pass(es) over it in the {n(d['wall'])}-s run: at the table's 5% "
        f"scale factor a long crawl vacuums urls every ~{n(threshold)} dead tuples, i.e. "
        f"every ~{n(threshold / max(d['upd_u'] / pages, 1))} pages here, each pass reading "
        "the whole table and its indexes: a cost this run's CPU per page does not hold. "
        "Options, not tried here: keep the record out of the hot row (an append-only table, "
        "as contents is), and drop the per-URL `fetching` mark (the host lease already says "
        "who holds a host's URLs, and claim/release already reset them), which would halve "
        "the row rewrites.")
    x0, x1 = ls[0]["due"], ls[-1]["due"]
    y0, y1 = ls[0]["none_due"], ls[-1]["none_due"]
    rec_row = rec["ms"] / max(rec["rows"], 1) * 1000
    add(f"5. **The lease is bounded by the owned hosts × their share** "
        f"({n(x0['median_ms'])} ms for {n(x0['rows'])} URLs at {n(ls[0]['m'])} due URLs per "
        f"owned host, {n(x1['median_ms'])} ms at {n(ls[-1]['m'])}; previously "
        f"{n(p['lease_10k'])} ms for 256 at 10,000 with 16 hosts): "
        f"~{n(x1['median_ms'] / max(x1['rows'], 1) * 1000, 1)} µs per URL leased, the row "
        f"update of point 4 (recording costs ~{n(rec_row, 1)} µs per URL). In the run: "
        f"{n(lease['calls'] / pages * 1000, 1)} leases per 1,000 pages, "
        f"{share(d, 'lease_urls'):.0%} of the execution time; median {n(d['lease_median'])} "
        f"URLs per lease ({n(d['lease_small'])} of {n(d['leases'])} leases took 1–99 URLs, "
        f"{n(d['empty_leases'])} none): the refills while a window drains. What is not "
        "bounded by the window: per owned host the lease walks urls_origin_due in depth "
        "order and skips the entries that are not due (in flight, or waiting for a retry) "
        "until it has the host's share, so with none due it reads them all: "
        f"{n(y0['median_ms'], 1)} ms to find nothing at {n(ls[0]['m'])} retryable URLs per "
        f"owned host, {n(y1['median_ms'])} ms at {n(ls[-1]['m'])}, at every refill (up to "
        f"every {REFILL_EVERY * 1000:g} ms) until those hosts are given back after "
        f"{RELEASE_AFTER:g} s idle.")
    cont = _stmt(d, "contents_since")
    add(f"6. **Shared digests are broadcast.** Every worker reads every content digest "
        f"(`contents_since`, {n(cont['calls'] / pages * 1000, 2)} calls per 1,000 pages, "
        f"{n(cont['rows'] / max(cont['calls'], 1))} rows per call here): cheap with 4 workers "
        f"({share(d, 'contents_since'):.1%} of the execution time), but the rows read grow with "
        "pages/s × workers (the capacity table); a unique index on content_hash answered by "
        "`INSERT … ON CONFLICT` would find exact duplicates without the broadcast (near "
        "duplicates still need the SimHash blocks).")
    many = [c for c in cs if c["workers"] != cs[0]["workers"]]
    add("7. **The claim (and `share`) grow with the live workers**, not the hosts: the "
        "fair-share count stops at (k + owned) × live workers rows: "
        + ", ".join(f"{n(c['median_ms'], 2)} ms with {c['workers']} workers and "
                    f"{n(c['with_work'])} of {n(c['n'])} hosts with work" for c in many)
        + f". In the run the claim took {share(d, 'claim_hosts'):.1%} of the server's "
        f"execution time ({n(_per_call(d, 'claim_hosts'), 2)} ms per call, "
        f"{n(d['claim_median'])} hosts per claim at the median).")
    idle_share = d["idle_s"] / d["worker_wall"]
    add(f"8. **Engine side: hosts drain together, and the worker runs dry.** A worker owns "
        f"{K_HOSTS} hosts; a drained host is given back only after {RELEASE_AFTER:g} s with "
        "nothing in memory, or at an idle wait, and new hosts come only with a refill, so "
        f"windows end with the worker idle: {n(d['idle_waits'])} idle waits, "
        f"{idle_share:.1%} of the workers' time asleep ({POLL_SECONDS:g} s each), "
        f"{n(d['released'])} hosts released in {n(d['released_calls'])} releases. Instant "
        "fetches make this bubble larger than in a crawl (a real window takes seconds to "
        "drain); each one also sends `outstanding` (point 3).")
    add(f"9. **Round trips are not the cost.** {n(d['server_calls'] / pages, 3)} statements "
        f"per page (BEGIN/COMMIT included) with {n(pages / max(d['commits'], 1))} results per "
        "commit; the server's time goes to row work (index probes, non-HOT updates, WAL, "
        "whole-table counts), and no driver changes the server's share (the driver "
        "comparison above).")
    add("")
    return "\n".join(out)
