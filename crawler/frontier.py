"""The frontier (pure): per-host queues and a heap of hosts ordered by when each may next be sent to.

`next_ready(now)` decides and returns what to do, it does not wait: Ready (fetch this URL now),
Wait (nothing is due for that many seconds), Busy (queued work waits only on requests in flight)
or Empty. Within a host, URLs come out by depth, then in discovery order: breadth-first, so a
depth limit never drops a page reachable within it. A URL found again at a smaller depth while
still queued moves up to that depth.

Invariants (checked by `check_invariants`, which the stateful test calls after every step):
- every queued URL is in exactly one host queue and in `_queued` with its best depth;
- a host with queued URLs and a free in-flight slot has an entry in `_hosts` (entries may be
  stale: an entry is valid only if its time equals the host's current ready time);
- `_entry_at[host]` is the time of the host's one live entry; an entry with another time is
  superseded and dropped when it reaches the top (so the heap holds O(hosts) live entries);
- `_size` is the number of queued URLs and never exceeds `max_size`; `_counts[host]` is the number
  of queued URLs of that host (stale heap entries not counted).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from enum import Enum

from crawler.politeness import HostSlots
from crawler.urls import Origin, origin_of


# not frozen: one is made per page, and a frozen dataclass's __init__ costs 5-10x more
@dataclass(slots=True)
class Ready:
    """Fetch *url* now: its host's slot has been acquired (release it with `done`)."""

    url: str
    depth: int
    origin: Origin


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing is due before *seconds* from now."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Busy:
    """URLs are queued, but only for hosts whose in-flight limit is reached: wait for a `done`."""


@dataclass(frozen=True, slots=True)
class Empty:
    """No URL is queued."""


class Pushed(Enum):
    """What `push` did with a URL."""

    QUEUED = "queued"
    IMPROVED = "improved"  # already queued, now at a smaller depth
    SEEN = "seen"  # queued or handed out before, at this depth or a smaller one
    FULL = "full"  # the frontier is at max_size: the caller must hold it (backpressure)


@dataclass(slots=True, eq=False)
class Frontier:
    """Per-host depth-ordered queues behind the politeness slots."""

    slots: HostSlots
    max_size: int = 100_000
    _queues: dict[Origin, list[tuple[int, int, str]]] = field(default_factory=dict)
    _queued: dict[str, int] = field(default_factory=dict)  # url -> best depth, while queued
    _seen: dict[str, int] = field(default_factory=dict)  # url -> depth it was handed out at
    _hosts: list[tuple[float, int, Origin]] = field(default_factory=list)
    _entry_at: dict[Origin, float] = field(default_factory=dict)  # time of a host's valid entry
    _blocked: set[Origin] = field(default_factory=set)  # queued work, in-flight limit reached
    _counts: dict[Origin, int] = field(default_factory=dict)  # live queued URLs per host
    _seq: itertools.count = field(default_factory=itertools.count)
    _size: int = 0

    def __len__(self) -> int:
        return self._size

    def push(self, url: str, depth: int) -> Pushed:
        """Queue a normalized *url* found at *depth*, unless seen at this depth or a smaller one."""
        if url in self._seen:
            return Pushed.SEEN  # already handed out: refetching is the engine's call, not ours
        best = self._queued.get(url)
        if best is not None and best <= depth:
            return Pushed.SEEN
        if best is None and self._size >= self.max_size:
            return Pushed.FULL
        origin = origin_of(url)
        # A better depth leaves the old entry behind, stale: _pop_url skips it.
        heapq.heappush(self._queues.setdefault(origin, []), (depth, next(self._seq), url))
        self._queued[url] = depth
        if best is not None:
            return Pushed.IMPROVED
        self._size += 1
        self._counts[origin] = self._counts.get(origin, 0) + 1
        if self._counts[origin] == 1:  # the host had no work: it was neither scheduled nor blocked
            self._schedule(origin)
        return Pushed.QUEUED

    def _schedule(self, origin: Origin) -> None:
        ready = self.slots.ready_at(origin)
        if ready is None:
            self._blocked.add(origin)
        else:
            self._blocked.discard(origin)
            if self._entry_at.get(origin) != ready:  # one valid entry per host, not one per call
                self._entry_at[origin] = ready
                heapq.heappush(self._hosts, (ready, next(self._seq), origin))

    def _pop_url(self, origin: Origin) -> tuple[str, int] | None:
        queue = self._queues[origin]
        while queue:
            depth, _, url = heapq.heappop(queue)
            if self._queued.get(url) == depth:  # not a stale entry left by an improved depth
                del self._queued[url]
                self._size -= 1
                self._counts[origin] -= 1
                return url, depth
        return None

    def next_ready(self, now: float) -> Ready | Wait | Busy | Empty:
        """Return the next URL whose host may be sent to at *now*, or what to wait for."""
        hosts = self._hosts
        while hosts:
            at, _, origin = hosts[0]
            if self._entry_at.get(origin) != at:  # a superseded entry
                heapq.heappop(hosts)
                continue
            if not self._has_work(origin):
                heapq.heappop(hosts)
                del self._entry_at[origin]
                continue
            ready = self.slots.ready_at(origin)
            if ready is None:
                heapq.heappop(hosts)
                del self._entry_at[origin]
                self._blocked.add(origin)
                continue
            if ready != at:  # stale time: the host's slot moved on
                self._entry_at[origin] = ready
                heapq.heapreplace(hosts, (ready, next(self._seq), origin))
                continue
            if at > now:
                return Wait(at - now)
            heapq.heappop(hosts)
            del self._entry_at[origin]
            if not self.slots.try_acquire(origin, now):  # cannot happen: ready_at said free
                raise AssertionError(f"slot of {origin} refused at its ready time")
            popped = self._pop_url(origin)
            assert popped is not None
            url, depth = popped
            self._seen[url] = depth
            if self._has_work(origin):
                self._schedule(origin)
            return Ready(url, depth, origin)
        return Busy() if self._size else Empty()

    def forget(self, url: str) -> None:
        """Let *url*, handed out before, be pushed again (a retry)."""
        self._seen.pop(url, None)

    def queued_for(self, origin: Origin) -> int:
        """How many URLs of *origin* are queued."""
        return self._counts.get(origin, 0)

    def drop_host(self, origin: Origin) -> list[str]:
        """Remove every queued URL of *origin* (another worker took the host); return them."""
        dropped = [url for depth, _, url in self._queues.pop(origin, [])
                   if self._queued.get(url) == depth]
        for url in dropped:
            del self._queued[url]
        self._size -= len(dropped)
        self._counts.pop(origin, None)
        self._entry_at.pop(origin, None)  # its heap entry, if any, is now superseded
        self._blocked.discard(origin)
        return dropped

    def done(self, origin: Origin) -> None:
        """The request handed out for *origin* finished: free its slot and reschedule the host."""
        self.slots.release(origin)
        if self._has_work(origin):
            self._blocked.discard(origin)
            self._schedule(origin)

    def _has_work(self, origin: Origin) -> bool:
        return self._counts.get(origin, 0) > 0

    def check_invariants(self) -> None:
        """Assert the invariants in the module docstring (for tests)."""
        live = {url for q in self._queues.values() for d, _, url in q if self._queued.get(url) == d}
        assert live == set(self._queued), "queued URLs and host queues disagree"
        assert self._size == len(self._queued) <= self.max_size
        for origin, count in self._counts.items():
            assert count == sum(1 for d, _, u in self._queues[origin] if self._queued.get(u) == d)
        scheduled = {o for t, _, o in self._hosts if self.slots.ready_at(o) == t}
        for origin in self._queues:
            if self._has_work(origin) and self.slots.ready_at(origin) is not None:
                assert origin in scheduled, f"{origin} has work and a free slot but is not scheduled"
