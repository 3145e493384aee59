"""The crawler-pg-scale section's capacity estimate and findings."""

from __future__ import annotations

from typing import Any

from bench.crawler.pg_engine_settings import COMMIT_BATCH, K_HOSTS, REFILL_EVERY
from bench.crawler.pg_report_figures import (
    CRAWL_CPU_US,
    CRAWL_PAGES_S,
    LOOP_PAGES_S,
    MACHINES,
    PER_MACHINE,
    PREVIOUS,
    SERVER_CORES,
    WORKERS_PER_MACHINE,
    share,
)
from bench.crawler.pg_report_format import exec_ms, mib, n, plan_by_label, table
from crawler.engine_worker import CONTENTS_EVERY, POLL_SECONDS, RELEASE_AFTER

FRONTIER_WIDE = ("outstanding", "redirects")  # statements whose cost grows with the frontier


def _rank(d: dict[str, Any], prefix: str) -> str:
    """'the dearest statement' / 'the 2nd dearest statement' by execution time."""
    order = [s["label"] for s in d["stmts"]]
    i = next((k for k, label in enumerate(order) if label.startswith(prefix)), None)
    if i is None:
        return "not sent"
    return "the dearest statement" if i == 0 else (
        f"the {i + 1}{'nd' if i == 1 else 'rd' if i == 2 else 'th'} dearest statement")


def _stmt(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next((s for s in d["stmts"] if s["label"].startswith(prefix)),
                dict(calls=0, ms=0.0, rows=0, wal=0, read=0))


def _per_call(d: dict[str, Any], prefix: str) -> float:
    s = _stmt(d, prefix)
    return s["ms"] / s["calls"] if s["calls"] else 0.0


def _us_per_page(d: dict[str, Any], *prefixes: str) -> float:
    """Server execution µs per page of the statements whose label starts so."""
    return sum(s["ms"] for s in d["stmts"] if s["label"].startswith(prefixes)) / d["pages"] * 1e3


def capacity_part(fig: dict[str, Any], d: dict[str, Any]) -> str:
    """What one server carries: crawl machines per server at the measured CPU per page."""
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


def findings_part(fig: dict[str, Any], d: dict[str, Any]) -> str:
    """The findings: what limits the frontier in PostgreSQL, and what changed."""
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
        cont0 = exec_ms(plan_by_label(plans1, "contents_since"))
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
