"""One worker of a shared crawl (`--workers N`, or a PostgreSQL `--state`): the single-process
engine (engine.py) with the shared protocol (state/shared.py) in place of its own state file.

What changes from a single process:
- The worker claims hosts, then leases URLs only of hosts it owns; each claimed host's politeness
  state (next send time, Crawl-delay, robots.txt) comes with the claim and goes back at every
  heartbeat and at release, so a host moving between workers keeps its gap.
- A heartbeat renews the leases every third of `config.lease`; a host found lost (the lease ran
  out while this worker stalled) is dropped from memory, and no request is sent to a host whose
  lease is not valid right now. Results of lost hosts are refused by the state (token check).
- New URLs go to the state with the result that found them. Those of hosts the worker owns are
  leased by that same commit if they are still waiting (a previous owner of the host may have
  fetched them, and no worker knows every URL) and queued at once; the others wait for their
  host's owner or a claim.
- Hosts are held up to the worker's fair share: beyond it (another worker joined) the excess is
  drained and given back, and so is a host with nothing to do for RELEASE_AFTER seconds.
- When the worker has nothing to do it polls the state: another worker may discover more. It stops
  when no URL anywhere is due or in flight, and releases its hosts on the way out (Ctrl-C too).
- Content digests are shared through the state, read every CONTENTS_EVERY seconds: duplicates
  across workers are found once the digest is committed (pages fetched at the same moment by two
  workers can both count as originals).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from crawler.engine import _Crawl
from crawler.frontier import Ready
from crawler.state import HostLease, HostUpdate, Lease, open_shared
from crawler.state.shared import origin_key
from crawler.urls import Origin, origin_of

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25  # how often an idle worker (or one short of work) looks at the state
# An idle worker's first looks come sooner (doubling up to POLL_SECONDS): at a crawl's end the
# first worker done waits for the others' last commits, and a fixed quarter second added ~0.12 s
# on average to a 4-s crawl's wall; a long idle spell still costs four looks a second.
FIRST_IDLE_POLL = 0.02
RELEASE_AFTER = 1.0  # seconds an owned host may have nothing to do before it is given back
CONTENTS_EVERY = 0.5  # seconds between two reads of the digests other workers committed
REBALANCE_EVERY = 1.0  # seconds between two checks of the owned hosts against the fair share
SEND_MARGIN = 0.5  # a host whose lease ends within this many seconds gets no new request


class _RobotsStore(dict):
    """robots.txt answers of owned hosts, loaded with each claim and written back (dirty) with
    the next heartbeat or release."""

    def __init__(self) -> None:
        super().__init__()
        self.dirty: set[str] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.dirty.add(key)


class _WorkerCrawl(_Crawl):
    """The crawl as one of many workers (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker = self.config.worker
        self._owned: dict[str, HostLease] = {}
        self._origins: dict[str, Origin] = {}
        self._robots_cache = _RobotsStore()
        self._contents: list[tuple[str, str | None, str | None]] = []
        self._content_cursor = 0
        self._last_poll = 0.0
        self._idle_poll = FIRST_IDLE_POLL  # the next idle wait's length (see FIRST_IDLE_POLL)
        self._idle_until = 0.0  # when the last idle wait ended (monotonic)
        self._released = False
        self._reading_sitemaps: set[Origin] = set()  # hosts whose sitemaps are being fetched
        self._idle_since: dict[str, float] = {}  # owned hosts with nothing to do, since when
        # owned hosts being given back (beyond the fair share, or idle): nothing more of theirs
        # is queued or sent, since the dispatcher runs on while a release is written
        self._draining: set[str] = set()
        self._routed_at_once: set[str] = set()  # queued before the commit that leases them
        self._last_rebalance = 0.0
        self._contents_read = 0.0

    # -- the state --------------------------------------------------------------------------

    async def _open_state(self, path: str) -> None:
        self.state = await open_shared(self.config.state or path, self.worker)

    async def _close_state(self) -> None:
        try:
            if not self._released:
                await self._release_all()
        except Exception as exc:  # the database went away: leases expire on their own
            log.warning("could not release hosts: %s", exc)
        finally:
            await self.state.close()

    def _robots_store(self) -> Any:
        return self._robots_cache

    async def _start(self) -> None:
        now = time.time()
        await self.state.join(now)
        await self.state.add_discovered([(s, 0, None) for s in self.seeds])
        for url in self.seeds:
            self.admission.known.setdefault(url, 0)
        self.admission.restore_hops(await self.state.redirects())
        await self._read_contents()

    async def _read_contents(self) -> None:
        rows, self._content_cursor = await self.state.contents_since(self._content_cursor)
        for url, content_hash, fingerprint in rows:
            if content_hash:
                self.recorder.hashes.setdefault(bytes.fromhex(content_hash)[:16], url)
            if fingerprint:
                self.recorder.simhashes.add(int(fingerprint, 16), url)

    # -- the dispatcher's hooks -------------------------------------------------------------

    async def _dispatch(self) -> None:
        beat = asyncio.create_task(self._heartbeat())
        try:
            await super()._dispatch()
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    def _check_due(self) -> None:
        now = time.monotonic()
        if now - self._last_poll >= POLL_SECONDS:
            self._last_poll = now
            self._db_due = True

    async def _idle_wait(self) -> float | None:
        await self._flush()
        await self._release_idle(set(self._owned))
        left = await self.state.outstanding(time.time())
        if left.active == 0 and left.next_retry is None:
            return None
        self._db_due = True
        now = self._last_poll = time.monotonic()
        if left.active == 0:  # only retries remain, somewhere
            return min(POLL_SECONDS * 4, max(0.0, left.next_retry - time.time()))
        if now - self._idle_until > POLL_SECONDS:  # work came in between: a new idle spell
            self._idle_poll = FIRST_IDLE_POLL
        wait, self._idle_poll = self._idle_poll, min(POLL_SECONDS, 2 * self._idle_poll)
        self._idle_until = now + wait
        return wait

    # every refill is a commit and a lease on a state other workers share: at once only when
    # the connections are about to run dry, else four times a second (bigger group commits:
    # at 50 ms, 2 workers made 7x the single process's transactions for the same pages)
    REFILL_EVERY = POLL_SECONDS

    def _hungry(self, in_memory: int) -> bool:
        return in_memory < self.config.concurrency

    def _take_fresh(self) -> None:
        # Every new URL goes to the state with the result that found it. Those of hosts this
        # worker owns are also leased by that same commit, if they are still waiting then (a
        # previous owner may have fetched them: this worker does not know every URL of a host).
        # Those of a host no other worker ever owned (claimed with token 1) are queued at once,
        # as a single process does: every URL of it anyone leased went through this worker's
        # memory (_route), so a URL new here is not fetched yet. The others are queued when the
        # commit leases them; the rest wait for their host's owner, or a claim.
        fresh, self.admission.fresh = self.admission.fresh, []
        room = self.config.window - len(self.frontier) - self._held_count
        for url, depth, referrer in fresh:
            key = origin_key(url)
            if key in self._owned and key not in self._draining:
                self._direct.append(url)
                if self._owned[key].token == 1 and room > 0:
                    room -= 1
                    self._routed_at_once.add(url)
                    self._route(Lease(url, depth, referrer, 0))
            else:
                self._spilled = True

    def _route(self, lease: Lease) -> None:
        # a URL leased here is known here: a later link to it is not new (see _take_fresh)
        self.admission.known.setdefault(lease.url, lease.depth)
        super()._route(lease)

    async def _fetch_page(self, ready: Ready) -> None:
        key = origin_key(ready.url)
        host = self._owned.get(key)
        if host is None or host.lease_until - SEND_MARGIN < time.time() or key in self._draining:
            # not ours (lost), being given back, or the lease may run out before the answer
            self.frontier.done(ready.origin)
            self._inflight -= 1
            self._dispatched -= 1
            self._leases.pop(ready.url, None)
            self.frontier.forget(ready.url)  # it comes back leased once the host is released
            self._wake.set()
            return
        await super()._fetch_page(ready)

    async def _load_sitemaps(self, origin: Origin, rules: Any) -> None:
        self._reading_sitemaps.add(origin)  # the host stays ours while its sitemaps are read
        try:
            await super()._load_sitemaps(origin, rules)
        finally:
            self._reading_sitemaps.discard(origin)

    def _store_record(self, fetched: Any, record: Any, items: list[str]) -> Any:
        stored = super()._store_record(fetched, record, items)
        if (record.content_hash and record.duplicate_of is None and record.status is not None
                and 200 <= record.status < 300 and "html" in (record.content_type or "")):
            self._contents.append((record.url, record.content_hash, record.simhash))
        return stored

    # -- commits, leases, claims ------------------------------------------------------------

    async def _commit(self, batch: list[Any], direct: list[str], found: list[Any],
                      lastmods: list[tuple[str, str]]) -> None:
        contents, self._contents = self._contents, []
        if found:
            await self.state.add_discovered(found)
        tokens = {key: host.token for key, host in self._owned.items()}
        try:
            outcome = await self.state.record_results(batch, tokens, contents, time.time(),
                                                      direct)
        except BaseException:
            self._contents[:0] = contents
            raise
        for lease in outcome.leased:
            key = origin_key(lease.url)
            if (lease.url not in self._routed_at_once and key in self._owned
                    and key not in self._draining):
                self._route(lease)
        self._routed_at_once.difference_update(direct)
        if outcome.lost:
            log.warning("%s: lost %d host(s) to another worker; %d result(s) refused",
                        self.worker, len(outcome.lost), outcome.refused)
            self._drop(outcome.lost)

    async def _lease(self, room: int) -> None:
        async with self._flush_lock:
            now = time.time()
            if now - self._contents_read >= CONTENTS_EVERY:
                self._contents_read = now
                await self._read_contents()
            cfg = self.config
            # up to this worker's fair share of the hosts (the claim computes it), within a cap
            # that keeps the claim small: holding only enough hosts to fill the connections
            # left the last hosts to one worker at the end, in waves (bench: crawler-workers)
            wanted = max(64, 4 * -(-cfg.concurrency // cfg.per_host)) - len(self._owned)
            # No URL list of a claimed host is loaded: every new URL goes through the state,
            # whose unique key is the seen-URL index that counts across workers.
            for host in await self.state.claim_hosts(wanted, now, cfg.lease, cfg.delay):
                self._adopt(host)
            got = await self.state.lease_urls(
                [key for key in self._owned if key not in self._draining], room, now)
        self._db_due = False
        leased_hosts = set()
        for lease in got:
            leased_hosts.add(origin_key(lease.url))
            self._route(lease)
        await self._rebalance()
        await self._release_idle(set(self._owned) - leased_hosts, after=RELEASE_AFTER)
        if self._draining:
            await self._release_idle(self._draining)

    async def _rebalance(self) -> None:
        """Give back hosts beyond this worker's fair share (another worker joined since they were
        claimed): their queued URLs leave memory, and each host goes back to the state once its
        requests in flight are answered, with its politeness state."""
        now = time.monotonic()
        if now - self._last_rebalance < REBALANCE_EVERY or len(self._owned) <= 1:
            return
        self._last_rebalance = now
        async with self._flush_lock:
            share = await self.state.share(time.time(), self.config.lease, len(self._owned))
        keep = set(self._owned) - self._draining
        excess = len(keep) - share
        if excess <= 0:
            return
        # the hosts with the least queued work go first
        queued = {key: self.frontier.queued_for(self._origins[key]) for key in keep}
        for key in sorted(keep, key=queued.__getitem__)[:excess]:
            self._draining.add(key)
            for url in self.frontier.drop_host(self._origins[key]):
                self._leases.pop(url, None)

    def _adopt(self, host: HostLease) -> None:
        """Take a claimed host's politeness state."""
        key = host.origin
        self._owned[key] = host
        origin = self._origins[key] = origin_of(key + "/")
        loop = asyncio.get_running_loop()
        slots = self.frontier.slots
        slot = slots.slot(origin)
        ahead = host.next_send - time.time()
        if ahead > 0:
            slot.next_send_at = max(slot.next_send_at, loop.time() + ahead)
            slot.last_send_at = slot.next_send_at - max(slot.delay, host.crawl_delay or 0.0)
        if host.crawl_delay:
            slots.set_crawl_delay(origin, host.crawl_delay)
        if host.robots is not None:
            dict.__setitem__(self._robots_cache, key, host.robots)

    def _busy(self, key: str) -> bool:
        """Whether this worker still has work for the host in memory."""
        origin = self._origins.get(key)
        if origin is None:
            return False
        slot = self.frontier.slots.slots.get(origin)
        return (self.frontier.queued_for(origin) > 0 or origin in self._held
                or origin in self._reading_sitemaps or (slot is not None and slot.in_flight > 0))

    async def _release_idle(self, candidates: set[str], after: float = 0.0) -> None:
        """Release the hosts among *candidates* with nothing to do here for *after* seconds (a
        host whose queue ran dry until the next lease keeps its owner: a release and a claim
        cost a transaction each, and another worker would gain nothing)."""
        now = time.monotonic()
        idle = []
        for key in candidates:
            if key not in self._owned or self._busy(key):
                self._idle_since.pop(key, None)
            elif now - self._idle_since.setdefault(key, now) >= after:
                idle.append(key)
        if idle:
            # their last results (a robots.txt verdict, a page just answered) may still wait for
            # a commit: made after the release, it would be refused and the URLs done again
            await self._flush()
            async with self._flush_lock:
                # checked again under the lock, and marked in the same step: a commit that ran
                # meanwhile may have queued URLs of theirs, and from here none can be
                idle = [key for key in idle if key in self._owned and not self._busy(key)]
                self._draining.update(idle)
                await self.state.release([self._update(key) for key in idle], time.time())
            for key in idle:
                self._forget_host(key)

    async def _release_all(self) -> None:
        self._released = True
        if self._owned:
            await self.state.release([self._update(k) for k in list(self._owned)], time.time())
        await self.state.leave(time.time())

    def _update(self, key: str) -> HostUpdate:
        """A host's politeness state as the state stores it (wall clock)."""
        host = self._owned[key]
        origin = self._origins[key]
        slot = self.frontier.slots.slots.get(origin)
        next_send = host.next_send
        crawl_delay = host.crawl_delay
        if slot is not None:
            loop = asyncio.get_running_loop()
            next_send = max(next_send, time.time() + (slot.next_send_at - loop.time()))
            if slot.floor >= 0:
                crawl_delay = slot.floor if slot.floor > self.config.delay else crawl_delay
        robots = None
        if key in self._robots_cache.dirty:
            robots = tuple(self._robots_cache[key])
            self._robots_cache.dirty.discard(key)
        host.next_send = next_send
        return HostUpdate(key, host.token, next_send, crawl_delay, robots)

    async def _heartbeat(self) -> None:
        """Renew every owned host's lease a third of the way through it."""
        while True:
            await asyncio.sleep(self.config.lease / 3)
            # under the lock: a release in progress must not make its hosts look lost; and
            # even with no host, the renewal marks this worker live (its fair share counts it)
            async with self._flush_lock:
                now = time.time()
                updates = [self._update(key) for key in list(self._owned)]
                lost = await self.state.renew(updates, now, self.config.lease)
            for u in updates:
                if u.origin in self._owned and u.origin not in lost:
                    self._owned[u.origin].lease_until = now + self.config.lease
            if lost:
                log.warning("%s: lost %d host(s) (lease expired)", self.worker, len(lost))
                self._drop(lost)

    def _drop(self, keys: set[str]) -> None:
        """Forget hosts another worker now owns: their queued and held URLs go."""
        for key in keys:
            origin = self._origins.get(key)
            if origin is not None:
                for url in self.frontier.drop_host(origin):
                    self._leases.pop(url, None)
                held = self._held.pop(origin, None)
                if held:
                    self._held_count -= len(held)
            self._forget_host(key)

    def _forget_host(self, key: str) -> None:
        self._owned.pop(key, None)
        self._idle_since.pop(key, None)
        self._draining.discard(key)
        self._robots_cache.pop(key, None)
        self._robots_cache.dirty.discard(key)

