"""The frontier against a model: every URL out once, by depth per host, never early, never lost."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from crawler.frontier import Busy, Empty, Frontier, Pushed, Ready, Wait
from crawler.politeness import HostSlots

HOSTS = ["http://127.0.1.1:8000", "http://127.0.1.2:8000", "http://127.0.1.3:8000"]
URLS = st.builds(lambda h, p: f"{h}/p{p}", st.sampled_from(HOSTS), st.integers(0, 15))


class FrontierMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.5
        self.frontier = Frontier(HostSlots(delay=self.delay, per_host=2), max_size=12)
        self.now = 0.0
        self.queued: dict[str, int] = {}  # model: url -> best depth
        self.handed: set[str] = set()
        self.in_flight: list[Ready] = []
        self.last_send: dict[object, list[float]] = {}

    @rule(url=URLS, depth=st.integers(0, 4))
    def push(self, url: str, depth: int) -> None:
        result = self.frontier.push(url, depth)
        if url in self.handed or (url in self.queued and self.queued[url] <= depth):
            assert result is Pushed.SEEN
        elif url in self.queued:
            assert result is Pushed.IMPROVED
            self.queued[url] = depth
        elif len(self.queued) >= 12:
            assert result is Pushed.FULL
        else:
            assert result is Pushed.QUEUED
            self.queued[url] = depth

    @rule(advance=st.sampled_from([0.0, 0.1, 0.5, 2.0]))
    def take(self, advance: float) -> None:
        self.now += advance
        got = self.frontier.next_ready(self.now)
        if isinstance(got, Ready):
            assert self.queued.pop(got.url) == got.depth
            self.handed.add(got.url)
            same_host = [u for u, _ in self.queued.items() if u.startswith(str(got.origin) + "/")]
            assert all(self.queued[u] >= got.depth for u in same_host), "a shallower URL was skipped"
            sends = self.last_send.setdefault(got.origin, [])
            assert not sends or self.now - sends[-1] >= self.delay - 1e-9
            sends.append(self.now)
            self.in_flight.append(got)
        elif isinstance(got, Wait):
            assert got.seconds > 0 and self.queued
        elif isinstance(got, Busy):
            assert self.queued and self.in_flight
        else:
            assert isinstance(got, Empty) and not self.queued

    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        if self.in_flight:
            done = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
            self.frontier.done(done.origin)

    @invariant()
    def consistent(self) -> None:
        self.frontier.check_invariants()
        assert len(self.frontier) == len(self.queued)

    def teardown(self) -> None:
        # Drain: with time passing and every request finishing, every queued URL comes out.
        for _ in range(200):
            for r in self.in_flight:
                self.frontier.done(r.origin)
            self.in_flight.clear()
            self.now += 1.0
            got = self.frontier.next_ready(self.now)
            while isinstance(got, Ready):
                self.queued.pop(got.url)
                self.in_flight.append(got)
                got = self.frontier.next_ready(self.now)
            if isinstance(got, Empty):
                break
        assert not self.queued, f"never handed out: {sorted(self.queued)}"


FrontierMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=50, deadline=None)
test_frontier_agrees_with_the_model = FrontierMachine.TestCase
