"""The "crawler-pg-scale" section of bench/RESULTS.md from bench/crawler/pg_scale.py's figures.

The parts live beside it: pg_report_run.py (the main run), pg_report_scaling.py (statement
growth, drivers), pg_report_capacity.py (capacity, findings); pg_report_format.py formats,
pg_report_figures.py derives the per-page figures.
"""

from __future__ import annotations

from typing import Any

from bench.crawler.pg_engine_settings import (
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
from bench.crawler.pg_report_capacity import capacity_part, findings_part
from bench.crawler.pg_report_figures import PREVIOUS, derive
from bench.crawler.pg_report_format import n
from bench.crawler.pg_report_run import (
    dead_part,
    load_part,
    plans_part,
    run_part,
    sizes_part,
    statements_part,
)
from bench.crawler.pg_report_scaling import drivers_part, scaling_part
from crawler.engine_worker import CONTENTS_EVERY, POLL_SECONDS, RELEASE_AFTER


def render(fig: dict[str, Any]) -> str:
    """The crawler-pg-scale section of RESULTS.md from pg_scale's figures *fig*."""
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
    add(load_part(part))
    add(run_part(fig, d))
    add(statements_part(d))
    add(sizes_part(d))
    add(dead_part(part, d))
    add(plans_part(fig, part))
    add(scaling_part(fig))
    add(drivers_part(fig))
    add(capacity_part(fig, d))
    add(findings_part(fig, d))
    return "\n".join(out)
