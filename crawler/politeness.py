"""Per-host politeness (pure): how many requests may be in flight and when the next may be sent.

The next send time is reserved when a request is admitted, before it is sent: two workers can
never both see a host as free and shorten the gap (scrapy times dequeues, so its gaps shrink under
load). Every method takes `now`; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crawler.urls import Origin

ANSWER_SLACK = 0.002  # seconds a gap may fall short of the delay at the server (tolerance is 5 ms)


@dataclass(slots=True, eq=False)
class HostSlot:
    """The politeness state of one origin."""

    delay: float  # minimum gap between two sends: max(--delay, Crawl-delay)
    per_host: int  # requests allowed in flight at once
    in_flight: int = 0  # admitted and not yet released
    next_send_at: float = 0.0  # earliest moment the next request may be sent (reserved)
    last_send_at: float | None = None  # when the latest admitted request was (to be) sent
    floor: float = -1.0  # the delay the host returns to after throttling (< 0: `delay` as built)


@dataclass(slots=True)
class HostSlots:
    """All hosts' slots, created on first use with the crawl's delay and per-host limit."""

    delay: float = 1.0
    per_host: int = 1
    slots: dict[Origin, HostSlot] = field(default_factory=dict)
    resumed_at: float | None = None  # a resumed crawl: every host counts as sent to at this time

    def __post_init__(self) -> None:
        if self.delay < 0 or self.per_host < 1:
            raise ValueError("delay must be >= 0 and per_host >= 1")

    def slot(self, origin: Origin) -> HostSlot:
        """Return the slot of *origin*, creating it."""
        found = self.slots.get(origin)
        if found is None:
            found = self.slots[origin] = HostSlot(self.delay, self.per_host)
            if self.resumed_at is not None:
                found.last_send_at, found.next_send_at = self.resumed_at, self.resumed_at + self.delay
        return found

    def ready_at(self, origin: Origin) -> float | None:
        """The moment *origin* may next be sent to, or None while its in-flight limit is reached."""
        s = self.slot(origin)
        return None if s.in_flight >= s.per_host else s.next_send_at

    def try_acquire(self, origin: Origin, now: float) -> bool:
        """Admit one request to *origin* at *now* if allowed, reserving the next send time."""
        s = self.slot(origin)
        if s.in_flight >= s.per_host or now < s.next_send_at:
            return False
        s.in_flight += 1
        s.last_send_at = now
        s.next_send_at = now + s.delay
        return True

    def release(self, origin: Origin) -> None:
        """A request to *origin* finished (whatever its outcome)."""
        s = self.slot(origin)
        if s.in_flight <= 0:
            raise RuntimeError(f"release without acquire for {origin}")
        s.in_flight -= 1

    def set_crawl_delay(self, origin: Origin, crawl_delay: float | None) -> None:
        """Apply robots.txt's Crawl-delay when longer than the crawl's delay, from this moment on."""
        s = self.slot(origin)
        s.delay = s.floor = max(self.delay, crawl_delay or 0.0)
        # The gap counts from the last send, the robots.txt request included, so the first page
        # request after it already keeps the new delay.
        if s.last_send_at is not None:
            s.next_send_at = max(s.next_send_at, s.last_send_at + s.delay)

    def answered(self, origin: Origin, at: float) -> None:
        """A request to *origin* got its answer (or failed) at *at*: count the gap from there too.

        The server logs a request when it arrives, which can be later than the moment we reserved
        (a new connection, a busy event loop on either side), but never later than it answers. So
        a gap counted from the answer can never look short from the server's side by more than
        ANSWER_SLACK, the part of the issue's 5 ms tolerance spent here: the round trip between
        the server's log and our reading of the clock (1-3 ms on loopback under load) would
        otherwise be added to every gap.
        """
        s = self.slot(origin)
        at -= ANSWER_SLACK
        s.last_send_at = at if s.last_send_at is None else max(s.last_send_at, at)
        s.next_send_at = max(s.next_send_at, at + s.delay)

    def throttle(self, origin: Origin, *, overloaded: bool) -> None:
        """Adapt the host's delay (AutoThrottle-like): an overload answer (429) doubles it, up
        to 60 s (from 0.25 s if it was 0); each good answer takes 20% off, down to the floor
        (max of --delay and Crawl-delay), so the host recovers when it does."""
        s = self.slot(origin)
        if s.floor < 0:
            s.floor = s.delay
        if overloaded:
            s.delay = min(60.0, max(0.25, s.delay * 2.0))
        elif s.delay > s.floor:
            s.delay = max(s.floor, s.delay * 0.8)
            if s.delay - s.floor < 0.005:
                s.delay = s.floor

    def defer(self, origin: Origin, until: float) -> None:
        """Push the next send to *until* at the earliest (a 429/503 Retry-After)."""
        s = self.slot(origin)
        s.next_send_at = max(s.next_send_at, until)
