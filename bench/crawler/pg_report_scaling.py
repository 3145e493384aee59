"""The crawler-pg-scale section's parts on how statements grow and on the drivers."""

from __future__ import annotations

import statistics
from typing import Any

from bench.crawler.pg_engine_settings import K_HOSTS
from bench.crawler.pg_report_figures import MACHINES
from bench.crawler.pg_report_format import details, n, table


def scaling_part(fig: dict[str, Any]) -> str:
    """How the claim, the lease and the frontier-wide statements grow."""
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


def drivers_part(fig: dict[str, Any]) -> str:
    """asyncpg against psycopg."""
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
