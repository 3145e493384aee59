"""The crawler-pg-scale section's parts on the main run: load, run, statements, sizes, plans."""

from __future__ import annotations

import re
import statistics
from typing import Any

from bench.crawler.pg_engine_settings import COMMIT_BATCH, K_HOSTS
from bench.crawler.pg_queries import stat_label
from bench.crawler.pg_report_format import details, exec_ms, mib, n, plan_by_label, table


def _rows_of(plan: str) -> str:
    m = re.search(r"^\S.*?actual time=[\d.]+\.\.[\d.]+ rows=(\d+)", plan, re.M)
    return n(int(m.group(1))) if m else "?"


def load_part(part: dict[str, Any]) -> str:
    """The table of loading the frontier."""
    load = part["load"]
    rows = [[n(load["urls"]), n(load["seconds"], 1), n(load["urls"] / load["seconds"]),
             n(load["server_cpu"] / load["urls"] * 1e6, 1),
             n(load["client_cpu"] / load["urls"] * 1e6, 1), n(load["wal"] / load["urls"])]]
    return ("**Loading the frontier** through `add_discovered`, one process:\n\n"
            + table(["URLs", "wall s", "URLs/s", "server CPU µs/URL", "client CPU µs/URL",
                     "WAL bytes/URL"], rows, "rrrrrr") + "\n")


def run_part(fig: dict[str, Any], d: dict[str, Any]) -> str:
    """The main run's figures per page."""
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


def statements_part(d: dict[str, Any]) -> str:
    """The statements of the main run, from pg_stat_statements."""
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


def sizes_part(d: dict[str, Any]) -> str:
    """Table and index sizes before and after the run."""
    rows = []
    for k in d["s1"]:
        a0, a1 = d["s0"].get(k), d["s1"][k]
        rows.append([k[0], k[1], mib(a0) if a0 is not None else "–", mib(a1),
                     n((a1 - (a0 or 0)) / d["pages"])])
    return ("**Sizes** (MiB) after the load + VACUUM (start) and after the run (end); growth in "
            "bytes per page recorded:\n\n"
            + table(["relation", "what", "start", "end", "growth B/page"], rows, "llrrr") + "\n")


def dead_part(part: dict[str, Any], d: dict[str, Any]) -> str:
    """Dead tuples and autovacuum over the run."""
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


def plans_part(fig: dict[str, Any], part: dict[str, Any]) -> str:
    """The plans of one worker cycle before and after the run, and auto_explain's."""
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
    leased = [_rows_of(plan_by_label(part[k]["custom"], "lease_urls"))
              for k in ("plans0", "plans1")]
    claimed = [_rows_of(plan_by_label(part[k]["custom"], "claim_hosts"))
               for k in ("plans0", "plans1")]
    add(f"The explained claim took {claimed[0]} hosts before the run and {claimed[1]} after it; "
        f"its first lease {leased[0]} and {leased[1]} URLs (after the run, the hosts first in "
        "line are those new links made due again, holding a few URLs each).")
    add("")
    for prefix, nth, title in (
            ("claim_hosts", 0, "claim_hosts"), ("lease_urls", 0, "lease_urls (first lease)"),
            ("lease_urls", 1, "lease_urls (second lease: the claimed hosts' URLs in flight)"),
            ("record (links): INSERT urls", 0, "record (links): INSERT urls ON CONFLICT"),
            ("outstanding: counts", 0, "outstanding"), ("redirects", 0, "redirects")):
        plan = plan_by_label(part["plans1"]["generic"], prefix, nth)
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
