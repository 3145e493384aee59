"""The figures the crawler-pg-scale section compares against, and those it derives from a run."""

from __future__ import annotations

import statistics
from typing import Any

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


def _relabel(label: str) -> str:
    """Labels of statements pg_queries.stat_label did not know when the figures were taken."""
    if label.startswith("UPDATE urls SET status = $5 WHERE url = ANY"):
        return "record: lease links of owned hosts"
    return label


def share(d: dict[str, Any], *prefixes: str) -> float:
    """Share of the server's execution time spent in statements whose label starts so."""
    return sum(s["ms"] for s in d["stmts"] if s["label"].startswith(prefixes)) / d["exec_ms"]
