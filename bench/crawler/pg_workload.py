"""Simulated crawl workers for bench/crawler/pg_scale.py: the calls crawler/engine_worker.py makes
on the PostgreSQL state (PgShared), without HTTP, one worker per process.

A worker runs the engine's dispatcher loop (crawler/engine.py `_dispatch` with engine_worker.py's
hooks) with fetches that answer at once, under the `crawl` options of bench/crawler/workers.py's
throughput site (`--delay 0 --per-host 16 --concurrency 128`) and CrawlConfig's defaults
(window 10,000, lease 30 s):
- refill when fewer than window / 2 URLs are in memory and the state may hold due URLs (after a
  commit that found new URLs, or every POLL_SECONDS), at once when the engine's `_hungry` says
  so, else at most every REFILL_EVERY s (both read from the engine's code). A refill (`_lease`):
  `contents_since` if CONTENTS_EVERY s have passed, `claim_hosts(64 − owned)` (max(64,
  4 × ceil(128 / 16))), `lease_urls(owned, window − in memory)`, the fair-share check (`share`,
  every REBALANCE_EVERY s: hosts beyond it leave memory and go back), then `release` of the owned
  hosts that got no URL and have had nothing in memory for RELEASE_AFTER s (`_release_idle`);
- otherwise "fetch" COMMIT_BATCH URLs from memory, round robin over hosts (per-host 16, delay 0),
  and commit their results in one `record_results` (the engine's group commit: what finished
  while the last commit ran; here a fixed batch, an assumption). As the engine's admission does,
  a worker sends only the links new to its own seen-URL index (the URLs it found before; a URL
  leased from the state is not in it) or found at a smaller depth; those of hosts it owns are
  leased by that same commit (`record_results(..., lease=)`) and queued at once, the others make
  the state due for the next refill;
- with nothing in memory and nothing due (`_idle_wait`): `release` of every idle owned host,
  `outstanding`, then a POLL_SECONDS wait;
- a heartbeat task: `renew(owned)` every lease / 3, with no host owned too.
Once the pages recorded by all workers reach the target, a worker leases no more (no refill,
no link leased by a commit), commits what it holds in memory, then stops.
Results: 97% fetched with a ~450-byte JSON record like CrawlRecord.as_dict() and 10 links (9 to
URLs already known, picked at random among the initial frontier, 1 new URL on a random host), 2%
failed (no response, no links), 1% retryable (next try in 10 minutes, no record); digests for half
the pages. The bench's own work (making results, the in-memory queue) is timed apart.

The options and pacing are in pg_engine_settings.py, the synthetic pages in
pg_synthetic_pages.py, the server's CPU from /proc in pg_server_cpu.py.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import os
import time
from typing import Any

from bench.crawler.pg_engine_settings import (
    COMMIT_BATCH,
    DELAY,
    K_HOSTS,
    LEASE_SECONDS,
    REBALANCE_EVERY,
    REFILL_EVERY,
    WINDOW,
    hungry,
)
from bench.crawler.pg_synthetic_pages import SyntheticPages
from crawler.engine_worker import CONTENTS_EVERY, POLL_SECONDS, RELEASE_AFTER
from crawler.state.shared import HostLease, HostUpdate, origin_key

OPS = ("contents_since", "claim_hosts", "lease_urls", "share", "release", "record_results",
       "renew", "outstanding")


class _Sim:
    """One worker's loop: the engine's dispatcher with instant fetches (module docstring)."""

    def __init__(self, shared: Any, work: SyntheticPages, counter: Any, target: int) -> None:
        self.shared = shared
        self.work = work
        self.counter = counter
        self.target = target
        self.owned: dict[str, HostLease] = {}
        self.idle_since: dict[str, float] = {}
        self.draining: set[str] = set()  # owned hosts beyond the fair share, being given back
        self.known: dict[str, int] = {}  # the admission's seen-URL index: url -> best depth
        self.lease_in_commit = "lease" in inspect.signature(shared.record_results).parameters
        self.last_rebalance = 0.0
        self.memory: dict[str, collections.deque[Any]] = {}  # host -> leased URLs not "fetched"
        self.in_memory = 0
        self.turn: collections.deque[str] = collections.deque()  # round robin over hosts
        self.lock = asyncio.Lock()  # engine._flush_lock: one transaction at a time
        self.cursor = 0
        self.contents_read = 0.0
        self.db_due = True
        self.ops = dict.fromkeys(OPS, 0.0)
        self.calls = dict.fromkeys(OPS, 0)
        self.st: dict[str, Any] = dict(
            pages=0, links=0, links_found=0, direct=0, direct_leased=0, claims=0, leased=0,
            empty_leases=0, released=0, released_calls=0,
            drained=0, lost=0, refused=0, commits=0, idle_waits=0, idle_s=0.0, gen=0.0,
            lease_sizes=[], claim_sizes=[], shares=[])

    async def timed(self, name: str, coro: Any) -> Any:
        t = time.perf_counter()
        try:
            return await coro
        finally:
            self.ops[name] += time.perf_counter() - t
            self.calls[name] += 1

    def busy(self, key: str) -> bool:
        return bool(self.memory.get(key))

    async def release_idle(self, candidates: set[str], after: float) -> None:
        now = time.monotonic()
        idle = []
        for key in candidates:
            if key not in self.owned or self.busy(key):
                self.idle_since.pop(key, None)
            elif now - self.idle_since.setdefault(key, now) >= after:
                idle.append(key)
        if idle:
            async with self.lock:
                t = time.time()
                await self.timed("release", self.shared.release(
                    [HostUpdate(key, self.owned[key].token, t) for key in idle], t))
            for key in idle:
                self.owned.pop(key, None)
                self.idle_since.pop(key, None)
                self.draining.discard(key)
            self.st["released"] += len(idle)
            self.st["released_calls"] += 1

    async def refill(self, room: int) -> None:
        """engine_worker._lease."""
        async with self.lock:
            now = time.time()
            if now - self.contents_read >= CONTENTS_EVERY:
                self.contents_read = now
                _rows, self.cursor = await self.timed(
                    "contents_since", self.shared.contents_since(self.cursor))
            wanted = K_HOSTS - len(self.owned)
            if wanted > 0:
                claimed = await self.timed("claim_hosts", self.shared.claim_hosts(
                    wanted, now, LEASE_SECONDS, DELAY))
                for host in claimed:
                    self.owned[host.origin] = host
                self.st["claims"] += len(claimed)
                self.st["claim_sizes"].append(len(claimed))
            got = []
            origins = [key for key in self.owned if key not in self.draining]
            if origins:  # (with none, PgShared sends no statement)
                got = await self.timed("lease_urls", self.shared.lease_urls(origins, room, now))
        self.db_due = False
        self.st["leased"] += len(got)
        self.st["empty_leases"] += not got
        self.st["lease_sizes"].append(len(got))
        t = time.process_time()
        leased_hosts = self.queue(got)
        self.st["gen"] += time.process_time() - t
        await self.rebalance()
        await self.release_idle(set(self.owned) - leased_hosts, RELEASE_AFTER)
        if self.draining:
            await self.release_idle(set(self.draining), 0.0)

    async def rebalance(self) -> None:
        """engine_worker._rebalance: hosts beyond the fair share leave memory and go back."""
        now = time.monotonic()
        if (REBALANCE_EVERY is None or now - self.last_rebalance < REBALANCE_EVERY
                or len(self.owned) <= 1):
            return
        self.last_rebalance = now
        async with self.lock:
            share = await self.timed("share", self.shared.share(
                time.time(), LEASE_SECONDS, len(self.owned)))
        self.st["shares"].append(share)
        keep = set(self.owned) - self.draining
        excess = len(keep) - share
        if excess <= 0:
            return
        for key in sorted(keep, key=lambda k: len(self.memory.get(k, ())))[:excess]:
            self.draining.add(key)
            queue = self.memory.pop(key, None)
            if queue:
                self.in_memory -= len(queue)
                self.turn.remove(key)
            self.st["drained"] += 1

    def queue(self, leases: list[Any]) -> set[str]:
        """Leased URLs into memory; their hosts."""
        hosts = set()
        for lease in leases:
            key = origin_key(lease.url)
            hosts.add(key)
            queue = self.memory.get(key)
            if queue is None:
                queue = self.memory[key] = collections.deque()
            if not queue:
                self.turn.append(key)
            queue.append(lease)
        self.in_memory += len(leases)
        return hosts

    def take(self, n: int) -> list[Any]:
        """n URLs from memory, one host after the other."""
        out = []
        while self.turn and len(out) < n:
            key = self.turn.popleft()
            queue = self.memory[key]
            out.append(queue.popleft())
            if queue:
                self.turn.append(key)
        self.in_memory -= len(out)
        return out

    def admit(self, results: list[Any]) -> tuple[list[Any], list[str], bool, int]:
        """The engine's admission: each result keeps only the links new to this worker (or
        found at a smaller depth); the new ones of owned hosts are to be leased by the commit
        (engine_worker._take_fresh). (results, those URLs, whether others spilled, links sent)."""
        kept, direct, spilled, sent = [], [], False, 0
        known = self.known
        for url, status, record, links, next_try in results:
            out = []
            for link in links:
                best = known.get(link[0])
                if best is not None and link[1] >= best:
                    continue
                known[link[0]] = link[1]
                out.append(link)
                if best is not None:
                    continue  # a move-up: not new
                key = origin_key(link[0])
                if self.lease_in_commit and key in self.owned and key not in self.draining:
                    direct.append(link[0])
                else:
                    spilled = True
            sent += len(out)
            kept.append((url, status, record, out, next_try))
        return kept, direct, spilled, sent

    async def commit(self) -> None:
        t = time.process_time()
        batch = self.take(COMMIT_BATCH)
        results, contents, found = self.work.results(batch, time.time())
        results, direct, spilled, sent = self.admit(results)
        if direct and self.counter.value >= self.target:
            direct, spilled = [], True  # the stop: nothing more is leased
        tokens = {key: host.token for key, host in self.owned.items()}
        self.st["gen"] += time.process_time() - t
        async with self.lock:
            now = time.time()
            outcome = await self.timed("record_results", self.shared.record_results(
                results, tokens, contents, now, direct) if self.lease_in_commit else
                self.shared.record_results(results, tokens, contents, now))
        done = len(results) - outcome.refused
        self.st["lost"] += len(outcome.lost)
        self.st["refused"] += outcome.refused
        self.st["pages"] += done
        self.st["links_found"] += found
        self.st["links"] += sent
        self.st["direct"] += len(direct)
        self.st["commits"] += 1
        for key in outcome.lost:
            self.owned.pop(key, None)
        leased = getattr(outcome, "leased", [])
        self.st["direct_leased"] += len(leased)
        self.st["leased"] += len(leased)
        t = time.process_time()
        self.queue([lease for lease in leased if origin_key(lease.url) in self.owned])
        self.st["gen"] += time.process_time() - t
        with self.counter.get_lock():
            self.counter.value += done
        if spilled:
            self.db_due = True  # new URLs of other hosts went to the state (engine: spilled)

    async def idle(self) -> None:
        """engine_worker._idle_wait, then the dispatcher's wait."""
        self.st["idle_waits"] += 1
        await self.release_idle(set(self.owned), 0.0)
        async with self.lock:
            await self.timed("outstanding", self.shared.outstanding(time.time()))
        self.db_due = True
        t = time.perf_counter()
        await asyncio.sleep(POLL_SECONDS)
        self.st["idle_s"] += time.perf_counter() - t

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            async with self.lock:
                now = time.time()
                updates = [HostUpdate(key, host.token, now) for key, host in self.owned.items()]
                lost = await self.timed("renew", self.shared.renew(updates, now, LEASE_SECONDS))
            for key in lost:
                self.owned.pop(key, None)
            self.st["lost"] += len(lost)

    async def run(self) -> None:
        last_refill = last_poll = -1e9
        while True:
            if self.counter.value >= self.target:
                # the stop: no more refills, what is in memory is committed (every URL leased
                # is recorded, so per-page costs count each lease once)
                if not self.in_memory:
                    return
                await self.commit()
                continue
            now = time.monotonic()
            if now - last_poll >= POLL_SECONDS:  # engine_worker._check_due
                last_poll = now
                self.db_due = True
            if (self.in_memory < WINDOW // 2 and self.db_due
                    and (hungry(self.in_memory) or now - last_refill > REFILL_EVERY)):
                last_refill = now
                await self.refill(WINDOW - self.in_memory)
            elif self.in_memory:
                await self.commit()
            else:
                await self.idle()

    async def finish(self) -> None:
        t = time.time()
        if self.owned:
            await self.shared.release(
                [HostUpdate(key, host.token, t) for key, host in self.owned.items()], t)
        await self.shared.leave(t)


async def _worker(spec: dict[str, Any], counter: Any, go: Any, finish: Any,
                  ready: Any) -> dict[str, Any]:
    from bench.crawler.pg_psycopg import open_shared

    index = spec["index"]
    worker = f"bench-{os.getpid()}-{index}"
    shared, conn = await open_shared(spec["url"], worker, spec["driver"])
    await shared.join(time.time())
    sim = _Sim(shared, SyntheticPages(index, spec["seed"], spec["hosts"], spec["per_host"]), counter,
               spec["target"])
    ready.put(("ready", index))
    while not go.is_set():
        await asyncio.sleep(0.005)
    statements0 = conn.statements
    cpu0, wall0 = time.process_time(), time.perf_counter()
    beat = asyncio.create_task(sim.heartbeat())
    try:
        await sim.run()
    finally:
        beat.cancel()
        try:
            await beat
        except asyncio.CancelledError:
            pass
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    statements = conn.statements - statements0
    # generic or custom plans: what the server did with this connection's prepared statements
    plans = [tuple(r) for r in await conn.fetch(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")]
    # the parent reads the server's CPU and WAL while every backend is still there
    ready.put(("done", index))
    while not finish.is_set():
        await asyncio.sleep(0.005)
    await sim.finish()
    await shared.close()
    st = sim.st
    return dict(st, index=index, cpu=cpu, wall=wall, statements=statements, ops=sim.ops,
                calls=sim.calls, new_urls=sim.work.new, plans=plans,
                cycles=sim.calls["lease_urls"])


def worker_main(spec: dict[str, Any], counter: Any, go: Any, finish: Any, ready: Any,
                out: Any) -> None:
    """A worker process: connect, say ready, wait for *go*, run until *counter* reaches the
    target, say done, wait for *finish*, release its hosts, leave, put its figures on *out*.
    uvloop's loop, as `crawl` uses."""
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    try:
        with runner:
            out.put(runner.run(_worker(spec, counter, go, finish, ready)))
    except BaseException as exc:  # the parent reports it
        import traceback

        out.put({"index": spec["index"], "error": f"{exc!r}\n{traceback.format_exc()}"})
        ready.put(("failed", spec["index"]))
