"""The "crawler-pg-scale" section of bench/RESULTS.md from bench/crawler/pg_scale.py's figures."""

from __future__ import annotations

import re
import statistics
from typing import Any

from bench.crawler.pg_workload import K_HOSTS, LEASE_LIMIT, LEASE_SECONDS, RENEW_EVERY

# The single-process crawler against nginx (bench/RESULTS.md, section crawler-nginx, throughput
# site): useful pages/s and client CPU per page of `crawl`, and the plain aiohttp loop's pages/s.
CRAWL_PAGES_S, CRAWL_CPU_US, LOOP_PAGES_S = 2_338, 441, 4_241
MACHINES = 100
PER_MACHINE = (2_000, 4_000)  # pages/s per crawl machine, the range the brief gives
SERVER_CORES = (16, 32, 64)
RUN_NAMES = {"as_is": "shared_pg.py as is", "fixed": "with the 2 bench-only fixes"}


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


def key_lines(plan: str, limit: int = 30) -> str:
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


def _plan(plans: list[list[str]], prefix: str) -> str:
    return next((p for label, p in plans if label.startswith(prefix)), "")


# -- derived figures of one run --------------------------------------------------------------

def derive(part: dict[str, Any]) -> dict[str, Any]:
    """The per-page figures of one scale run."""
    run = part["run"]
    res = run["results"]
    pages = run["pages"]
    stmts = [s for s in run["statements"]
             if not s["label"].startswith(("asyncpg:", "driver:", "SELECT statement"))]
    d = dict(
        pages=pages, wall=run["wall"], cycles=run["cycles"],
        pages_s=pages / run["wall"], cycles_s=run["cycles"] / run["wall"],
        srv_us=run["server_cpu"] / pages * 1e6,
        cli_us=(run["client_cpu"] - run["gen"]) / pages * 1e6,
        cli_all_us=run["client_cpu"] / pages * 1e6,
        wal_b=run["wal"] / pages,
        client_stmts=sum(r["statements"] for r in res) / pages,
        server_calls=sum(s["calls"] for s in stmts),
        exec_ms=sum(s["ms"] for s in stmts),
        stmts=stmts,
        claims=sum(r["claims"] for r in res),
        empty=sum(r["empty_claims"] for r in res),
        nothing=sum(r["claimed_nothing_waiting"] for r in res),
        links=sum(r["links"] for r in res),
        new_urls=sum(r["new_urls"] for r in res),
        refused=sum(r["refused"] for r in res),
        lost=sum(r["lost"] for r in res),
    )
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
    by = {s["label"]: s for s in stmts}
    d["by"] = by
    ops: dict[str, list[float]] = {}
    for r in res:
        for k, v in r["ops"].items():
            o = ops.setdefault(k, [0.0, 0])
            o[0] += v
            o[1] += r["calls"][k]
    d["ops"] = ops
    return d


def share(d: dict[str, Any], *prefixes: str) -> float:
    """Share of the server's execution time spent in statements whose label starts so."""
    return sum(s["ms"] for s in d["stmts"] if s["label"].startswith(prefixes)) / d["exec_ms"]


# -- the section ------------------------------------------------------------------------------

def render(fig: dict[str, Any]) -> str:
    runs = fig["runs"]
    a, b = runs["as_is"], runs["fixed"]
    da, db = derive(a), derive(b)
    settings = fig["settings"]
    urls_total = fig["hosts"] * fig["per_host"]
    out: list[str] = []
    add = out.append
    add("## crawler-pg-scale — the crawl frontier in PostgreSQL at "
        f"{n(urls_total)} URLs: claim/record cycles without HTTP (issue 16)")
    add("")
    add(fig["machine"])
    add("")
    add("Command: `python -m bench.crawler.pg_scale` (in `make bench-crawler`; "
        "`FANMILL_BENCH_QUICK=1` shrinks it to 20,000 URLs and 5,000 pages)"
        + (" — **this is a QUICK run**" if fig["quick"] else "") + ". "
        "**The machine has 2 cores, shared by the server, the 4 worker processes and other "
        "engineers' jobs** (load average at start "
        f"{' '.join(fig['loadavg'])}; at the end of the two main runs "
        f"{' '.join(a['loadavg_run_end'])} and {' '.join(b['loadavg_run_end'])}): pages/s here is "
        "what a share of 2 cores does for client and server together; the transferable figures "
        "are CPU, statements and WAL bytes per page.")
    add("")
    add(f"Server: PostgreSQL {settings['server_version']}, a throwaway cluster from "
        "fixtures/postgres.py started with **fast=False (durable: fsync "
        f"{settings['fsync']}, synchronous_commit {settings['synchronous_commit']}, "
        f"full_page_writes {settings['full_page_writes']})**, every other setting the default "
        f"(shared_buffers {settings['shared_buffers']}, max_wal_size {settings['max_wal_size']}, "
        f"checkpoint_timeout {settings['checkpoint_timeout']}, wal_compression "
        f"{settings['wal_compression']}, autovacuum on with the tables' own scale factors from "
        "shared_pg.py), Unix socket. **pg_stat_statements** and auto_explain (plans of statements "
        "slower than 100 ms, to the server log) are loaded through `ALTER SYSTEM SET "
        "shared_preload_libraries` and a restart. Server CPU = user + system of the postmaster "
        "and all its children (backends, autovacuum, checkpointer, WAL writer, parallel workers; "
        "exited ones through the postmaster's cutime/cstime) from /proc; WAL = "
        "`pg_current_wal_lsn()` difference. Clients: asyncpg "
        f"{fig['versions']['asyncpg']} (the crawler's driver) through the crawler's own "
        f"`PgShared`, uvloop {fig['versions']['uvloop']} as `crawl` uses; **W={fig['w']} worker "
        "processes** (spawned, each its own connection and worker id); client CPU = each "
        "process's own CPU time over its cycles, the synthetic page generation (records, links) "
        "taken out.")
    add("")
    add("The frontier: " + n(urls_total) + f" URLs over {n(fig['hosts'])} hosts "
        f"({fig['per_host']} per host, `http://h{{i}}.example/p{{j}}`: strings only, nothing is "
        "fetched), added in shuffled order (a crawl finds a host's URLs over time) through "
        "`PgShared.add_discovered`, 10,000 per call; then VACUUM ANALYZE and CHECKPOINT. "
        "One cycle of a worker (bench/crawler/pg_workload.py, after engine_worker.py's `_lease` "
        f"and `_commit`): `contents_since` (the engine reads shared digests at each lease) → "
        f"`claim_hosts({K_HOSTS} − owned)` → `host_urls` of the claimed hosts (the engine does "
        f"this after each claim) → `lease_urls(owned, {LEASE_LIMIT})` → `release` of owned hosts "
        "that got no URL (the engine's `_release_idle`) → `record_results` of every leased URL "
        f"with the claims' tokens; `renew` of all owned hosts every {RENEW_EVERY:g} s (lease "
        f"{LEASE_SECONDS:g} s). Results: 97% fetched with a {n(a['record_bytes'] or 0)}-byte "
        "JSON record shaped like `CrawlRecord.as_dict()` and 10 links (9 to URLs already known, "
        "at random over the frontier, 1 new URL on a random host), 2% failed (no links), 1% "
        "retryable in 10 minutes; content digests for half the pages. A run stops at "
        f"{n(fig['target'])} pages recorded (a page = one URL's result committed), not at a "
        "time. **Two runs**, each on a fresh database: the crawler's `shared_pg.py` as it is, "
        "and with two bench-only fixes of the problems the first run shows "
        "(bench/crawler/pg_fixes.py; the crawler's code is not changed): "
        f"`{fig['origin_index']}` for host_urls, and hosts marked due only for the links the "
        "INSERT really added (`RETURNING origin`) instead of every link's host.")
    add("")
    add(_load_part(a, b))
    add(_run_part(fig, da, db))
    add(_statements_part(da, db))
    add(_sizes_part(da, db))
    add(_dead_part(a, b, da, db))
    add(_plans_part(fig, a, b))
    add(_scaling_part(fig))
    add(_drivers_part(fig))
    add(_capacity_part(fig, da, db))
    add(_findings_part(fig, da, db))
    return "\n".join(out)


def _load_part(a: dict[str, Any], b: dict[str, Any]) -> str:
    rows = []
    for name, part in (("as is", a), ("fixes", b)):
        load = part["load"]
        rows.append([name, n(load["urls"]), n(load["seconds"], 1),
                     n(load["urls"] / load["seconds"]),
                     n(load["server_cpu"] / load["urls"] * 1e6, 1),
                     n(load["client_cpu"] / load["urls"] * 1e6, 1), n(load["wal"] / load["urls"])])
    idx = b.get("index_seconds")
    return ("**Loading the frontier** through `add_discovered`, one process (the index of the "
            f"second run is built after the load{'' if idx is None else f', in {idx:.1f} s'}):"
            "\n\n" + table(["run", "URLs", "wall s", "URLs/s", "server CPU µs/URL",
                            "client CPU µs/URL", "WAL bytes/URL"], rows) + "\n")


def _run_part(fig: dict[str, Any], da: dict[str, Any], db: dict[str, Any]) -> str:
    def both(f: Any) -> list[str]:
        return [f(da), f(db)]

    rows = [
        ["pages recorded (results committed)", *both(lambda d: n(d["pages"]))],
        ["wall s (go → last worker's stop)", *both(lambda d: n(d["wall"], 1))],
        ["**pages/s** (2 shared cores, client + server)",
         *both(lambda d: f"**{n(d['pages_s'])}**")],
        ["cycles · cycles/s (all workers)",
         *both(lambda d: f"{n(d['cycles'])} · {n(d['cycles_s'], 1)}")],
        ["pages per cycle", *both(lambda d: n(d["pages"] / d["cycles"], 1))],
        ["**PostgreSQL server CPU µs per page**", *both(lambda d: f"**{n(d['srv_us'], 1)}**")],
        ["client CPU µs per page (· with the synthetic page generation)",
         *both(lambda d: f"{n(d['cli_us'], 1)} · {n(d['cli_all_us'], 1)}")],
        ["**WAL bytes per page**", *both(lambda d: f"**{n(d['wal_b'])}**")],
        ["statements per page, client count (BEGIN/COMMIT included)",
         *both(lambda d: n(d["client_stmts"], 3))],
        ["statements per page, pg_stat_statements (BEGIN/COMMIT included)",
         *both(lambda d: n(d["server_calls"] / d["pages"], 3))],
        ["server execution time per page (pg_stat_statements)",
         *both(lambda d: f"{n(d['exec_ms'] / d['pages'] * 1000, 1)} µs")],
        ["links sent per page · new URLs per page",
         *both(lambda d: f"{n(d['links'] / d['pages'], 1)} · {n(d['new_urls'] / d['pages'], 2)}")],
        ["hosts claimed · released without any URL leased (share)",
         *both(lambda d: f"{n(d['claims'])} · {n(d['empty'])} "
                         f"({d['empty'] / max(d['claims'], 1):.0%})")],
        ["· of those claimed, hosts with no waiting URL at all (made due by a link to a "
         "known URL)", *both(lambda d: n(d["nothing"]))],
        ["results refused (token) · hosts lost", *both(lambda d: f"{n(d['refused'])} · "
                                                                 f"{n(d['lost'])}")],
    ]
    out = [f"**{fig['w']} workers until {n(fig['target'])} pages** (asyncpg, durable server):",
           "", table(["", RUN_NAMES["as_is"], RUN_NAMES["fixed"]], rows, "lrr"), ""]
    calls = sorted(set(da["ops"]) | set(db["ops"]), key=lambda k: -da["ops"].get(k, [0])[0])
    rows = []
    for k in calls:
        row = [k]
        for d in (da, db):
            t, c = d["ops"].get(k, [0.0, 0])
            busy = sum(v[0] for v in d["ops"].values())
            row += [n(c), n(t / c * 1000, 2) if c else "–", f"{t / busy:.0%}"]
        rows.append(row)
    out += ["Per call as the workers saw it (wall time of the awaited call, all workers):", "",
            table(["call", "calls (as is)", "mean ms", "share of time in calls", "calls (fixes)",
                   "mean ms", "share"], rows), ""]
    return "\n".join(out)


def _statements_part(da: dict[str, Any], db: dict[str, Any]) -> str:
    labels = [s["label"] for s in da["stmts"]]
    labels += [s["label"] for s in db["stmts"] if s["label"] not in labels]
    rows = []
    for label in labels:
        row = [label]
        for d in (da, db):
            s = d["by"].get(label)
            if s is None:
                row += ["–"] * 4
                continue
            row += [n(s["calls"] / d["pages"] * 1000, 1), n(s["ms"] / s["calls"], 2),
                    f"{s['ms'] / d['exec_ms']:.1%}", n(s["wal"] / d["pages"])]
        s = da["by"].get(label)
        row.append(n(s["rows"] / s["calls"], 1) if s else "–")
        rows.append(row)
    return ("**Where the server's time goes** (pg_stat_statements over each run: execution time "
            "only, not parse/bind/network; sorted by the first run's time):\n\n"
            + table(["statement", "calls per 1,000 pages", "mean ms", "share of exec time",
                     "WAL B/page", "fixes: calls per 1,000 pages", "mean ms",
                     "share of exec time", "WAL B/page", "rows per call (as is)"], rows) + "\n")


def _sizes_part(da: dict[str, Any], db: dict[str, Any]) -> str:
    keys = list(da["s1"]) + [k for k in db["s1"] if k not in da["s1"]]
    rows = []
    for k in keys:
        a0, a1 = da["s0"].get(k), da["s1"].get(k)
        b0, b1 = db["s0"].get(k), db["s1"].get(k)
        rows.append([k[0], k[1], mib(a0) if a0 is not None else "–",
                     mib(a1) if a1 is not None else "–",
                     n((a1 - a0) / da["pages"]) if a1 is not None else "–",
                     mib(b0) if b0 is not None else "–", mib(b1) if b1 is not None else "–",
                     n((b1 - b0) / db["pages"]) if b1 is not None else "–"])
    return ("**Sizes** (MiB) after the load + VACUUM (start) and after the run (end); growth in "
            "bytes per page recorded:\n\n"
            + table(["relation", "what", "start", "end", "growth B/page", "fixes: start", "end",
                     "growth B/page"], rows, "llrrrrrr") + "\n")


def _dead_part(a: dict[str, Any], b: dict[str, Any], da: dict[str, Any],
               db: dict[str, Any]) -> str:
    out = ["**Live and dead tuples over the runs** (pg_stat_user_tables, sampled every 3 s; "
           "autovacuum = runs since the start of the run):", ""]
    for name, part in (("as is", a), ("with the fixes", b)):
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
        out += [f"*{name}*", "", table(["t s", "pages", "urls live", "urls dead",
                                       "urls autovacuum", "hosts live", "hosts dead",
                                       "hosts autovacuum", "WAL MiB", "server CPU s"], rows), ""]
    for name, part, d in (("as is", a, da), ("with the fixes", b, db)):
        out.append(f"{name}: urls updates {n(d['upd_u'])} ({n(d['upd_u'] / d['pages'], 2)} per "
                   f"page), HOT {d['hot_u'] / max(d['upd_u'], 1):.0%}; hosts updates "
                   f"{n(d['upd_h'])}, HOT {d['hot_h'] / max(d['upd_h'], 1):.0%}. URL statuses at "
                   "the end: " + ", ".join(f"{k} {n(v)}" for k, v in sorted(part["status"].items()))
                   + f"; hosts with a due time: {n(part['hosts_left'])}.")
        out.append("")
    return "\n".join(out)


def _plans_part(fig: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    add(f"**Plans on the {n(fig['hosts'] * fig['per_host'])}-URL table.** Every statement of one "
        "cycle (a worker of its own: claim 16 hosts, lease 256, record them, release) under "
        "EXPLAIN (ANALYZE, BUFFERS) in a savepoint rolled back, before a run (after the load) "
        "and after it; each with its arguments (a custom plan, as a prepared statement's first "
        "5 executions get) and as a generic plan (PREPARE + plan_cache_mode = "
        "force_generic_plan), since the server may keep a generic plan from the 6th execution "
        "(pg_prepared_statements of the workers' connections, first run: "
        + _generic_counts(a) + "). Execution ms:")
    add("")
    rows = []
    cols = [_keyed(c) for c in (a["plans0"]["custom"], a["plans0"]["generic"],
                                a["plans1"]["custom"], a["plans1"]["generic"],
                                b["plans1"]["custom"], b["plans1"]["generic"])]
    keys = list(cols[0]) + [k for c in cols[1:] for k in c if k not in cols[0]]
    seen = set()
    for key in keys:
        if key in seen or key[0] in ("join", "leave"):
            continue
        seen.add(key)
        rows.append([key[0] + ("" if key[1] == 0 else f" (#{key[1] + 1})")]
                    + [n(exec_ms(c[key]), 2) if key in c else "–" for c in cols])
    leased = [_leased(p) for p in (a["plans0"]["custom"], a["plans1"]["custom"],
                                   b["plans1"]["custom"])]
    add(table(["statement", "before: custom", "before: generic", "after: custom",
               "after: generic", "fixes, after: custom", "fixes, after: generic"], rows))
    add("")
    add(f"The explained cycle leased {leased[0]} URLs before the first run, {leased[1]} after it "
        f"and {leased[2]} after the second (after a run, the hosts first in line hold few "
        "waiting URLs: drained hosts a new link gave one more URL, or in the first run none at "
        "all, finding 2), so the record statements' times are per batch of that size.")
    add("")
    for prefix in ("host_urls", "claim_hosts", "lease_urls"):
        add(details(f"{prefix}: plan after the first run (generic)",
                    _plan(a["plans1"]["generic"], prefix)))
    add(details("host_urls: plan after the second run, with the index on urls (origin) (generic)",
                _plan(b["plans1"]["generic"], "host_urls")))
    for name, part in (("first run", a), ("second run", b)):
        slow = part.get("slow", [])
        if slow:
            by: dict[str, list[float]] = {}
            for e in slow:
                by.setdefault(e["label"], []).append(e["ms"])
            add(f"auto_explain, {name}: {len(slow)} statement(s) slower than 100 ms: "
                + "; ".join(f"{k} ×{len(v)} (median {n(statistics.median(v))} ms, max "
                            f"{n(max(v))})" for k, v in
                            sorted(by.items(), key=lambda kv: -len(kv[1]))) + ".")
        else:
            add(f"auto_explain, {name}: no statement slower than 100 ms.")
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


def _leased(plans: list[list[str]]) -> str:
    m = re.search(r"Update on urls .*?actual time=[\d.]+\.\.[\d.]+ rows=(\d+)",
                  _plan(plans, "lease_urls"))
    return m.group(1) if m else "?"


def _generic_counts(part: dict[str, Any]) -> str:
    from bench.crawler.pg_scale import stat_label

    tot: dict[str, list[int]] = {}
    for r in part["run"]["results"]:
        for sql, generic, custom in r["plans"]:
            label = stat_label(sql)
            if label.startswith(("claim_hosts", "lease_urls", "host_urls")):
                t = tot.setdefault(label.split(":")[0], [0, 0])
                t[0] += generic
                t[1] += custom
    return ", ".join(f"{k} {n(g)} generic / {n(c)} custom" for k, (g, c) in sorted(tot.items()))


def _scaling_part(fig: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    add("**How the claim, the lease and host_urls grow.** Each statement alone on a database of "
        "its own, executed 25 times through one asyncpg connection (prepared: the server may "
        "switch to a generic plan from the 6th), median of the last 10 (the first execution in "
        "brackets), and the bench-only rewrite next to it (bench/crawler/pg_scale.py "
        "`CLAIM_REWRITE` + a partial index on hosts (owner), `LEASE_REWRITE`: the same rows, "
        "bounded work; the crawler's code is not changed). The claim: k=16 against N due, free "
        "hosts with 4 live workers. The lease: 16 owned hosts × M due URLs each, limit 256, in a "
        "urls table that also holds 1,000,000 fetched URLs of other hosts (QUICK: 50,000); "
        "host_urls of the same 16 hosts, without and with an index on urls (origin).")
    add("")
    rows = []
    for c in fig["claim_scaling"]:
        x, y = c["shared_pg"], c["rewrite"]
        rows.append([n(c["n"]), f"{n(x['median_ms'], 2)} ({n(x['first_ms'], 1)})",
                     n(x["exec_ms"], 2), f"{n(y['median_ms'], 2)} ({n(y['first_ms'], 1)})",
                     n(y["exec_ms"], 2), f"{x['hosts_claimed']} / {y['hosts_claimed']}"])
    add(table(["due hosts", "claim (shared_pg.py) ms", "its EXPLAIN ANALYZE ms", "rewrite ms",
               "its EXPLAIN ANALYZE ms", "hosts claimed per call (shared_pg / rewrite)"], rows))
    add("")
    rows = []
    for c in fig["lease_scaling"]:
        x, y = c["shared_pg"], c["rewrite"]
        hu, hi = c.get("host_urls"), c.get("host_urls_index")
        rows.append([n(c["m"]), n(16 * c["m"]), f"{n(x['median_ms'], 2)} ({n(x['first_ms'], 1)})",
                     n(x["exec_ms"], 2), f"{n(y['median_ms'], 2)} ({n(y['first_ms'], 1)})",
                     n(y["exec_ms"], 2),
                     f"{n(hu['median_ms'], 1)} ({n(hu['first_ms'], 1)})" if hu else "–",
                     f"{n(hi['median_ms'], 1)} ({n(hi['first_ms'], 1)})" if hi else "–"])
    add(table(["due URLs per owned host", "due URLs of the 16 owned hosts",
               "lease (shared_pg.py) ms", "its EXPLAIN ANALYZE ms", "lease rewrite ms",
               "its EXPLAIN ANALYZE ms", "host_urls ms (no index)", "host_urls ms (urls_origin)"],
              rows))
    add("")
    big_c, big_l = fig["claim_scaling"][-1], fig["lease_scaling"][-1]
    for title, plan in (
            (f"claim (shared_pg.py) at {n(big_c['n'])} hosts", big_c["shared_pg"]["plan"]),
            (f"claim rewrite at {n(big_c['n'])} hosts", big_c["rewrite"]["plan"]),
            (f"lease (shared_pg.py) at {n(big_l['m'])} URLs per host", big_l["shared_pg"]["plan"]),
            (f"lease rewrite at {n(big_l['m'])} URLs per host", big_l["rewrite"]["plan"])):
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
    add(f"**asyncpg against psycopg 3 (async), same cycle.** {rounds} round(s), the order rotated "
        f"each round, each run on a fresh database ({n(drv['hosts'])} hosts × "
        f"{drv['per_host']} = {n(drv['hosts'] * drv['per_host'])} URLs, loaded with asyncpg, "
        "VACUUM ANALYZE, CHECKPOINT; with the two bench-only fixes of the second run, so that "
        "host_urls' sequential scan does not hide the drivers) until "
        f"{n(drv['pages'])} pages. psycopg "
        f"{fig['versions']['psycopg']} runs PgShared's own methods over an adapter "
        "(bench/crawler/pg_psycopg.py) that translates each `$n` statement to psycopg's named "
        "placeholders (once per statement text) and passes arrays as lists: the SQL and the "
        "Python around it are the crawler's, and the port cannot drift from shared_pg.py (which "
        "changed while this bench was written). \"psycopg\" is psycopg's default (text "
        "parameters and results); \"psycopg binary\" passes `%b` parameters and asks binary "
        "results. psycopg's C implementation (psycopg_binary) is in use; psycopg prepares a "
        "statement server-side from its 5th execution, asyncpg from its 1st. Medians over "
        "rounds; client CPU without the synthetic page generation.")
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
                     n(srv, 1)])
    add(table(["driver", "W", "runs", "pages/s (median)", "pages/s (each run)",
               "client CPU µs/page (median)", "(each run)", "server CPU µs/page"], rows,
              "lrrrrrrr"))
    add("")
    lines = []
    for w in sorted({k[1] for k in med}):
        x = med.get(("asyncpg", w))
        if not x:
            continue
        for d in ("psycopg", "psycopg-binary"):
            y = med.get((d, w))
            if y:
                lines.append(f"W={w}: asyncpg {x['ps'] / y['ps']:.2f}× the pages/s of "
                             f"{d.replace('-', ' ')}, which takes {y['cli'] / x['cli']:.2f}× "
                             f"asyncpg's client CPU per page ({n(y['cli'], 1)} against "
                             f"{n(x['cli'], 1)} µs) and {y['srv'] / x['srv']:.2f}× its server "
                             "CPU per page")
    add("Ratios: " + "; ".join(lines) + ".")
    add("")
    ws = sorted({k[1] for k in med})
    try:
        ps = [med[("asyncpg", w)]["ps"] / med[("psycopg", w)]["ps"] for w in ws]
        cpu = [med[("psycopg", w)]["cli"] / med[("asyncpg", w)]["cli"] for w in ws]
        bps = [med[("asyncpg", w)]["ps"] / med[("psycopg-binary", w)]["ps"] for w in ws]
        bcpu = [med[("psycopg-binary", w)]["cli"] / med[("asyncpg", w)]["cli"] for w in ws]
    except KeyError:
        return "\n".join(out)
    bsrv = [med[("psycopg-binary", w)]["srv"] / med[("asyncpg", w)]["srv"] for w in ws]
    best = all(x >= 1 for x in ps + bps)

    def span(xs: list[float], digits: int = 2) -> str:
        lo, hi = f"{min(xs):.{digits}f}", f"{max(xs):.{digits}f}"
        return lo if lo == hi else f"{lo}–{hi}"

    add(f"**Verdict: {'asyncpg (the crawler’s driver) stays' if best else 'mixed, see the ratios'}"
        f".** It gives {span(ps)}× the pages/s of psycopg's default, which takes {span(cpu, 1)}× "
        "its client CPU per page; psycopg with binary parameters and results comes close in "
        f"client CPU ({span(bcpu)}× asyncpg's) but still gives {span([1 / x for x in bps])}× "
        f"asyncpg's pages/s and costs the server {span(bsrv)}× as much per page (W=1 and W=4); "
        "switching would buy nothing on this path.")
    add("")
    return "\n".join(out)


def _capacity_part(fig: dict[str, Any], da: dict[str, Any], db: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    add("**Capacity, on paper from these figures.** Assumptions, stated: the PostgreSQL "
        "server's CPU per page is the bound (every server process counted: backends, "
        "autovacuum, checkpointer, WAL writer); it scales linearly with cores (an upper bound: "
        "no lock, WAL-insertion or buffer contention counted); a server core is one core of "
        "this VM's Xeon; the workload is this one (10 links per page of which 1 new, 256-URL "
        f"leases, hosts of {fig['per_host']} URLs, a frontier of "
        f"{n(fig['hosts'] * fig['per_host'])} URLs whose tables fit in RAM). The first run's "
        f"{n(da['srv_us'], 1)} µs per page is dominated by host_urls' sequential scans (made "
        "worse by the hosts made due by known links) and grows with the table (see the "
        f"findings); the second run's {n(db['srv_us'], 1)} µs is what the design costs with the "
        "two fixes.")
    add("")
    rows = []
    for label, cores in [("1 core", 1), ("2 cores (this machine, all to the server)", 2)] + [
            (f"{c} cores", c) for c in SERVER_CORES]:
        rows.append([label] + [n(cores * 1e6 / d["srv_us"]) for d in (da, db)]
                    + [mib(cores * 1e6 / db["srv_us"] * db["wal_b"]) + " MiB/s"])
    add(table(["one PostgreSQL server with", f"pages/s it can feed, as is (1e6 / "
               f"{n(da['srv_us'], 1)} µs × cores)",
               f"pages/s, with the fixes (1e6 / {n(db['srv_us'], 1)} µs × cores)",
               f"WAL it then writes, with the fixes ({n(db['wal_b'])} B/page)"], rows))
    add("")
    lo, hi = (MACHINES * p for p in PER_MACHINE)
    contents_per_page = db["by"].get("record: INSERT contents", {}).get("rows", 0) / db["pages"]
    add(f"A {MACHINES}-machine crawl at {n(PER_MACHINE[0])}–{n(PER_MACHINE[1])} pages/s per "
        f"machine (the single-process `crawl` did {n(CRAWL_PAGES_S)} useful pages/s on the nginx "
        f"throughput site, the plain aiohttp loop {n(LOOP_PAGES_S)}; section crawler-nginx) "
        f"needs {n(lo)}–{n(hi)} pages/s from the state. With the second run's per-page costs "
        "(the as-is server cores for comparison):")
    add("")
    rows = []
    for p in (lo, hi):
        rows.append([n(p), n(p * db["srv_us"] / 1e6), n(p * da["srv_us"] / 1e6),
                     mib(p * db["wal_b"]) + " MiB/s",
                     n(p * db["server_calls"] / db["pages"]),
                     n(p * db["growth"] * 86400 / 2**40, 1) + " TiB",
                     n(p * contents_per_page * MACHINES * 2 / 1e6, 1) + " M"])
    add(table(["pages/s", "server cores busy (fixes)", "(as is, at 1M URLs)",
               "WAL (fixes)", "statements/s", "table + index growth per day",
               "digest rows read per second by 200 workers (contents_since)"], rows))
    add("")
    add(f"Arithmetic: cores = pages/s × server µs per page / 10⁶, e.g. {n(lo)} × "
        f"{n(db['srv_us'], 1)} µs = {n(lo * db['srv_us'] / 1e6)} cores and {n(hi)} × "
        f"{n(db['srv_us'], 1)} µs = {n(hi * db['srv_us'] / 1e6)}; one server core feeds "
        f"10⁶ / {n(db['srv_us'], 1)} = {n(1e6 / db['srv_us'])} pages/s, i.e. "
        f"{1e6 / db['srv_us'] / PER_MACHINE[0]:.1f}–{1e6 / db['srv_us'] / PER_MACHINE[1]:.1f} "
        f"crawl machines at {n(PER_MACHINE[0])}–{n(PER_MACHINE[1])} pages/s. WAL = pages/s × "
        f"{n(db['wal_b'])} B: {mib(lo * db['wal_b'])}–{mib(hi * db['wal_b'])} MiB/s, written "
        "by one WAL writer with an fsync per group commit, and the same pages again at "
        "checkpoints (a replica doubles the network). Growth = pages/s × "
        f"{n(db['growth'])} B of table + index per page × 86,400 s. Digest rows: every worker "
        f"reads every digest (contents_since), {n(contents_per_page, 2)} per page × pages/s × "
        f"{MACHINES * 2} workers ({MACHINES} machines × 2). On the client side the shared state "
        f"costs each crawl machine {n(db['cli_us'], 1)} µs of CPU per page (this bench's "
        f"workers), {db['cli_us'] / CRAWL_CPU_US:.0%} on top of `crawl`'s {n(CRAWL_CPU_US)} µs "
        "per page with its SQLite state.")
    add("")
    big = SERVER_CORES[-1]
    need = [p * db["srv_us"] / 1e6 / big for p in (lo, hi)]
    need_a = [p * da["srv_us"] / 1e6 / big for p in (lo, hi)]
    add(f"So: with the fixes one {big}-core server of this kind feeds at most "
        f"{n(big * 1e6 / db['srv_us'])} pages/s (linear scaling assumed), "
        f"{big * 1e6 / db['srv_us'] / PER_MACHINE[1]:.0f}–"
        f"{big * 1e6 / db['srv_us'] / PER_MACHINE[0]:.0f} crawl machines; a {MACHINES}-machine "
        f"crawl needs {need[0]:.1f}–{need[1]:.1f} such servers' CPU (as is: {need_a[0]:.0f}–"
        f"{need_a[1]:.0f}, and growing with the table), and {mib(lo * db['wal_b'])}–"
        f"{mib(hi * db['wal_b'])} MiB/s of WAL. Every statement of the cycle is keyed by host "
        "(origin) except the digests and the workers table, so the frontier splits by host hash "
        "over several servers, each with its own WAL; the per-page cost itself is mostly link "
        "probes and non-HOT row rewrites (findings 5 and 6), which no driver or round-trip "
        "change touches.")
    add("")
    return "\n".join(out)


def _idx_growth(d: dict[str, Any]) -> float:
    k = ("urls_origin", "index")
    return (d["s1"].get(k, 0) - d["s0"].get(k, 0)) / d["pages"]


def _jit(plan: str) -> str:
    m = re.search(r"Timing: .*Total ([\d.]+) ms", plan)
    return m.group(1) if m else "?"


def _stmt(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next((s for s in d["stmts"] if s["label"].startswith(prefix)),
                dict(calls=0, ms=0.0, rows=0, wal=0, read=0))


def _per_call(d: dict[str, Any], prefix: str) -> float:
    s = _stmt(d, prefix)
    return s["ms"] / s["calls"] if s["calls"] else 0.0


def _findings_part(fig: dict[str, Any], da: dict[str, Any], db: dict[str, Any]) -> str:
    cs, ls = fig["claim_scaling"], fig["lease_scaling"]
    top_a = da["stmts"][0]
    top_b = db["stmts"][0]
    links_b = share(db, "record (links): INSERT urls", "record (links): move up")
    host_a = _stmt(da, "host_urls")
    lease_wal = _stmt(db, "lease_urls")["wal"] / db["pages"]
    record_wal = _stmt(db, "record: UPDATE urls results")["wal"] / db["pages"]
    insert_wal = _stmt(db, "record (links): INSERT urls")["wal"] / db["pages"]
    hosts_ins_a, hosts_ins_b = (_per_call(d, "record (links): INSERT hosts") for d in (da, db))
    moved = _stmt(db, "record (links): move up")["rows"]
    wal_extra = db["wal_b"] - da["wal_b"]
    out = ["**Findings** (shared_pg.py is not changed by this bench; each point with the figure "
           "that shows it):", ""]
    add = out.append
    hu_plan = _plan(fig["runs"]["as_is"]["plans1"]["custom"], "host_urls")
    parallel = "Gather" in hu_plan
    add("1. **`host_urls` is a sequential scan of the whole urls table"
        + (", and it dominates" if top_a["label"] == "host_urls" else "") + ".** In the first "
        f"run it takes {share(da, 'host_urls'):.0%} of the server's execution time (the top "
        f"statement: {top_a['label']}, {top_a['ms'] / da['exec_ms']:.0%}), "
        f"{n(_per_call(da, 'host_urls'))} ms per call, {n(host_a['read'] / da['pages'])} blocks "
        "read from outside shared_buffers per page"
        + ("; the server runs it as a parallel sequential scan" if parallel else "")
        + ". `SELECT url, depth, status FROM urls "
        "WHERE origin = ANY($1)` has no index that holds fetched URLs: the primary key is on "
        "url and urls_origin_due is partial (waiting and in-flight URLs only). Its cost grows "
        "with the table, i.e. with the crawl: the 1,600 URLs of 16 hosts in a table of "
        f"{n(16 * ls[0]['m'] + (50_000 if fig['quick'] else 1_000_000))} rows take "
        f"{n(ls[0]['host_urls']['median_ms'], 1)} ms without an index and "
        f"{n(ls[0]['host_urls_index']['median_ms'], 1)} ms with `{fig['origin_index']}` (the "
        "second run's first fix), which costs one more index entry per URL row version "
        f"({'+' if wal_extra >= 0 else ''}{n(wal_extra)} WAL bytes per page in the second run, "
        f"{n(_idx_growth(db))} bytes of index per page). The engine calls it after every claim "
        "to learn the claimed hosts' URLs, fetched ones included (for its admission index), so "
        "it also grows with hosts' sizes: 16 hosts of "
        f"{n(ls[-1]['m'])} URLs are {n(16 * ls[-1]['m'])} rows, "
        f"{n(ls[-1]['host_urls_index']['median_ms'])} ms even with the index; the engine may "
        "want only the waiting URLs of a claimed host (urls_origin_due serves those) and a "
        "compact check for the rest.")
    add(f"2. **A link to a known URL makes its host due again.** `_add` inserts host rows and "
        "sets `due_at = 0` on the host of every link sent, known URLs included; a host whose "
        "URLs are all fetched becomes due again, the next claim takes it, `lease_urls` finds "
        f"nothing and the worker releases it. In the first run {n(da['nothing'])} of "
        f"{n(da['claims'])} claimed hosts ({da['nothing'] / max(da['claims'], 1):.0%}) had no "
        "waiting URL at all, each costing a claim, a host_urls (a sequential scan, point 1) "
        "and a release. The second run marks due only the hosts of URLs the INSERT added "
        f"(`INSERT … ON CONFLICT DO NOTHING RETURNING origin`): {n(db['nothing'])} such claims, "
        f"and the two hosts statements of `_add` shrink (INSERT hosts ON CONFLICT "
        f"{n(hosts_ins_a, 2)} → {n(hosts_ins_b, 2)} ms per call).")
    c0, c1 = cs[0], cs[-1]
    add(f"3. **The claim grows with the number of hosts.** The fair-share subquery counts every "
        "host with work (`count(*) FILTER … FROM hosts WHERE due_at IS NOT NULL OR owner IS NOT "
        "NULL`: a sequential scan), and the planner joins the picked hosts back with a hash join "
        "over a sequential scan of all hosts (the LIMIT is an expression, so it plans for many "
        f"rows): {n(c0['shared_pg']['median_ms'], 1)} ms at {n(c0['n'])} hosts, "
        f"{n(c1['shared_pg']['median_ms'], 1)} ms at {n(c1['n'])}. Bench rewrite "
        "(`CLAIM_REWRITE`, same hosts claimed): pick by primary key with `origin = "
        "ANY(ARRAY(SELECT … FOR UPDATE SKIP LOCKED))`, count hosts with work only up to "
        "(k + own leases) × live workers (beyond that the share is ≥ k anyway) through "
        "hosts_due (a leased host is always due), and count the caller's own leases through a "
        "partial index `hosts (owner) WHERE owner IS NOT NULL`: "
        f"{n(c0['rewrite']['median_ms'], 2)} ms at {n(c0['n'])}, "
        f"{n(c1['rewrite']['median_ms'], 2)} ms at {n(c1['n'])}."
        + (" At that size the claim's estimated cost also passes jit_above_cost: each custom "
           "plan pays a JIT compilation (" + _jit(c1["shared_pg"]["plan"]) + " ms in its plan)."
           if "JIT:" in c1["shared_pg"]["plan"] else ""))
    l0, l1 = ls[0], ls[-1]
    add(f"4. **The lease reads every due URL of the owned hosts.** `ORDER BY depth LIMIT 256` "
        "over the 16 owned hosts is a nested loop over all their due URLs and a top-N sort: "
        f"{n(l0['shared_pg']['median_ms'], 1)} ms at {n(l0['m'])} due URLs per host, "
        f"{n(l1['shared_pg']['median_ms'], 1)} ms at {n(l1['m'])} (a host may hold "
        "max_urls_per_host = 100,000). Bench rewrite (`LEASE_REWRITE`: per owned host, a "
        "LATERAL index scan of urls_origin_due with its own LIMIT, then the smallest depths): "
        f"{n(l0['rewrite']['median_ms'], 1)} and {n(l1['rewrite']['median_ms'], 1)} ms. The "
        "same ORDER BY also hands out whole hosts in index order: "
        f"{da['empty'] / max(da['claims'], 1):.0%} of the hosts claimed in the first run and "
        f"{db['empty'] / max(db['claims'], 1):.0%} in the second got no URL in their first "
        "lease and were released at once (claim + host_urls + release for nothing). A per-host "
        "cap of ceil(limit / owned hosts) in the LATERAL form would spread each lease over the "
        "owned hosts (the engine leases its window's free room, often more than 256, which "
        "hides this when the room is large).")
    add(f"5. **Once those are fixed, links dominate.** In the second run the top statement is "
        f"{top_b['label']} ({top_b['ms'] / db['exec_ms']:.0%}); the two link statements "
        f"(INSERT urls ON CONFLICT DO NOTHING, then the move-up UPDATE) take {links_b:.0%} of "
        f"the execution time: {n(db['links'] / db['pages'], 1)} links per page, each probing "
        f"the primary key twice, for {n(db['new_urls'] / db['pages'], 2)} new URL per page; the "
        f"move-up changed {n(moved)} rows in the whole run. Two statements are deliberate "
        "(`ON CONFLICT DO UPDATE` would lock rows other workers own, see the module docstring); "
        "the lever is sending fewer known links (the engine's own seen-URL index already drops "
        "the ones it knows; a per-worker cache of URLs known to the state would drop most of the "
        "rest).")
    add(f"6. **Every page rewrites its URL row twice, never HOT** ({da['hot_u'] / max(da['upd_u'], 1):.0%} "
        "HOT updates on urls): `lease_urls` (→ fetching) and `record_results` (→ fetched, with "
        "the ~450-byte record) both change `status`, which urls_origin_due's predicate uses, "
        "so each update writes a new heap tuple and new entries in every index. In the second "
        f"run that is {n(lease_wal)} + {n(record_wal)} WAL bytes per page (the link INSERTs "
        f"{n(insert_wal)}), urls had up to {n(db['max_dead_u'])} dead tuples and autovacuum "
        f"ran on it {db['autovac_u']} time(s) in the run (scale factor 0.05 as shared_pg.py "
        "sets). Options, not tried here: keep the record out of the hot row (an append-only "
        "table, as contents is), and drop the per-URL `fetching` mark (the host lease already "
        "says who holds a host's URLs, and claim/release already reset them).")
    add("7. **Shared digests are broadcast.** Every worker reads every content digest "
        "(`contents_since` at every lease): cheap with 4 workers, but rows read grow with "
        "pages/s × workers (the capacity table); a unique index on content_hash with an "
        "`INSERT … ON CONFLICT` answer would find exact duplicates without the broadcast "
        "(near duplicates still need the SimHash blocks).")
    add(f"8. **Round trips are not the cost.** {n(db['server_calls'] / db['pages'], 3)} "
        "statements per page (BEGIN/COMMIT included): batches of ~"
        f"{n(db['pages'] / db['cycles'])} results per transaction. The server's time goes to "
        "row work (index probes, non-HOT updates, WAL), not to statements.")
    add("")
    return "\n".join(out)
