"""Simulated worker processes (pg_workload.py) on a database, measured; the drivers compared."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from typing import Any

from bench.crawler.pg_queries import connect, load, settle, statements, table_stats, wal_lsn
from bench.crawler.pg_scale_settings import (
    DRIVERS,
    DRV_HOSTS,
    DRV_PAGES,
    PER_HOST,
    ROUNDS,
    SAMPLE_EVERY,
    SEED,
    W,
    log,
)
from bench.crawler.pg_server_cpu import postmaster_pid, server_cpu
from bench.crawler.pg_workload import worker_main
from fixtures.postgres import Cluster


async def run_workers(cluster: Cluster, url: str, driver: str, workers: int, target: int,
                      hosts: int, per_host: int, sample: bool = False) -> dict[str, Any]:
    """W worker processes (spawned) on *url* until *target* pages are recorded; the figures.
    The server's CPU, WAL and statistics are read between go and the moment every worker is
    done with its cycles, before any of them releases, leaves or disconnects."""
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    go, finish, ready, out = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
    procs = []
    for i in range(workers):
        spec = dict(url=url, index=i, driver=driver, seed=SEED, hosts=hosts, per_host=per_host,
                    target=target)
        p = ctx.Process(target=worker_main, args=(spec, counter, go, finish, ready, out),
                        daemon=True)
        p.start()
        procs.append(p)
    results: list[dict[str, Any]] = []

    def said(what: str, timeout: float) -> bool:
        """One message from a worker: True when it is *what*; raise when a worker failed."""
        try:
            kind, _index = ready.get(timeout=timeout)
        except queue.Empty:
            if not all(p.is_alive() for p in procs):
                _drain(out, results)
                raise RuntimeError("a worker process died:\n" + "\n".join(
                    r.get("error", "") for r in results)) from None
            return False
        if kind == "failed":
            time.sleep(0.5)
            _drain(out, results)
            raise RuntimeError("a worker failed:\n" + "\n".join(
                r.get("error", "") for r in results))
        return kind == what

    try:
        got, deadline = 0, time.monotonic() + 120
        while got < workers:
            got += said("ready", 0.1)
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not connect in 120 s")
        conn = await connect(url)
        postmaster = postmaster_pid(cluster.data_dir)
        if sample:
            await conn.execute("SELECT pg_stat_statements_reset()")
        stats0, wal0, srv0 = await table_stats(conn), await wal_lsn(conn), server_cpu(postmaster)
        samples = []
        t0 = time.perf_counter()
        go.set()
        next_sample, done = 0.0, 0
        while done < workers:
            now = time.perf_counter() - t0
            if sample and now >= next_sample:
                next_sample += SAMPLE_EVERY
                samples.append(dict(t=now, pages=counter.value, stats=await table_stats(conn),
                                    wal=await wal_lsn(conn) - wal0,
                                    server_cpu=server_cpu(postmaster) - srv0))
            done += said("done", 0)
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - t0
        srv1, wal1 = server_cpu(postmaster), await wal_lsn(conn)
        stats1 = await table_stats(conn)
        stmts = await statements(conn) if sample else []
        await conn.close()
        finish.set()
        deadline = time.monotonic() + 120
        while len(results) < workers:
            _drain(out, results)
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not finish in 120 s")
            await asyncio.sleep(0.05)
    finally:
        go.set()
        finish.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError("a worker failed:\n" + "\n".join(errors))
    wall = max(r["wall"] for r in results)
    pages = sum(r["pages"] for r in results)
    return dict(driver=driver, workers=workers, wall=wall, elapsed=elapsed, pages=pages,
                cycles=sum(r["cycles"] for r in results), results=results,
                client_cpu=sum(r["cpu"] for r in results), gen=sum(r["gen"] for r in results),
                server_cpu=srv1 - srv0, wal=wal1 - wal0, stats0=stats0, stats1=stats1,
                samples=samples, statements=stmts,
                loadavg=open("/proc/loadavg").read().split()[:3])


def _drain(out: Any, results: list[dict[str, Any]]) -> None:
    while True:
        try:
            results.append(out.get_nowait())
        except queue.Empty:
            return


# -- asyncpg against psycopg -----------------------------------------------------------------

async def drivers(cluster: Cluster) -> list[dict[str, Any]]:
    """Each (driver, W) on a fresh database of DRV_HOSTS x PER_HOST URLs, DRV_PAGES pages;
    ROUNDS rounds, the order rotated each round."""
    configs = [(d, w) for w in (1, W) for d in DRIVERS]
    runs = []
    for rnd in range(ROUNDS):
        order = configs[rnd % len(configs):] + configs[:rnd % len(configs)]
        if rnd % 2:
            order.reverse()
        for driver, workers in order:
            name = f"drv_{rnd}_{driver.replace('-', '_')}_{workers}"
            url = cluster.create_database(name)
            await load(url, DRV_HOSTS, PER_HOST, SEED)
            conn = await connect(url)
            await settle(conn)
            await conn.close()
            run = await run_workers(cluster, url, driver, workers, DRV_PAGES, DRV_HOSTS, PER_HOST)
            run["round"] = rnd
            runs.append(run)
            log(f"round {rnd} {driver} W={workers}: {run['pages'] / run['wall']:,.0f} pages/s, "
                 f"client {(run['client_cpu'] - run['gen']) / run['pages'] * 1e6:,.0f} µs/page, "
                 f"server {run['server_cpu'] / run['pages'] * 1e6:,.0f} µs/page")
            cluster.drop_database(name)
    return runs
