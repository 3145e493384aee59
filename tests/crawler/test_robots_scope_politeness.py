"""Robots decisions from golden cases, scope, and politeness timing with an injected clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler.politeness import ANSWER_SLACK, HostSlots
from crawler.robots import MAX_ROBOTS_BYTES, RobotsRules
from crawler.scope import Scope
from crawler.urls import Origin

ROBOTS = Path(__file__).resolve().parents[2] / "fixtures" / "robots"
GOLDEN = json.loads((ROBOTS / "cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", GOLDEN, ids=[c["file"] for c in GOLDEN])
def test_golden_robots_cases(case: dict) -> None:
    body = (ROBOTS / case["file"]).read_bytes()
    for ua, url, allowed in case["checks"]:
        assert RobotsRules.from_response(200, body, ua).allowed(url) is allowed, (ua, url)
    for ua, delay in case["delays"]:
        assert RobotsRules.from_response(200, body, ua).crawl_delay == delay


@pytest.mark.parametrize(("status", "allowed"), [(404, True), (410, True), (403, True), (500, False),
                                                  (503, False), (None, False), (302, False)])
def test_rfc_9309_outcomes_by_status(status: int | None, allowed: bool) -> None:
    rules = RobotsRules.from_response(status, b"User-agent: *\nAllow: /\n", "fanmill")
    assert rules.allowed("http://h/page") is allowed


def test_only_the_first_500_kib_is_parsed() -> None:
    body = b"User-agent: *\n" + b"# filler\n" * (MAX_ROBOTS_BYTES // 9) + b"Disallow: /late\n"
    assert RobotsRules.from_response(200, body, "fanmill").allowed("http://h/late")


def test_scope_is_the_seed_origins_plus_globs() -> None:
    scope = Scope.from_seeds(["http://127.0.1.1:8000/start", "HTTP://Example.com/"], ["*.example.org"])
    assert scope.allows("http://127.0.1.1:8000/other")
    assert not scope.allows("http://127.0.1.1:8001/")  # another port is another origin
    assert not scope.allows("https://127.0.1.1:8000/")
    assert scope.allows("http://example.com/x")
    assert scope.allows("https://docs.example.org/")
    assert not scope.allows("http://example.org/")
    assert not scope.allows("not a url")


A = Origin("http", "127.0.1.1", 8000)
B = Origin("http", "127.0.1.2", 8000)


def test_crawl_delay_counts_from_the_robots_request() -> None:
    slots = HostSlots(delay=0.1)
    assert slots.try_acquire(A, now=0.0)  # the robots.txt request
    slots.release(A)
    slots.set_crawl_delay(A, 0.25)
    assert not slots.try_acquire(A, now=0.2)
    assert slots.try_acquire(A, now=0.25)


def test_retry_after_defers_the_host() -> None:
    slots = HostSlots(delay=0.0)
    slots.defer(A, until=5.0)
    assert slots.ready_at(A) == 5.0 and not slots.try_acquire(A, now=4.9)
    assert slots.try_acquire(B, now=0.0)  # other hosts are not held back


@given(st.lists(st.tuples(st.sampled_from([A, B]), st.floats(0, 0.3), st.booleans()), max_size=60),
       st.sampled_from([0.0, 0.1, 0.25]), st.integers(1, 3))
def test_gaps_and_concurrency_hold_for_any_schedule(steps, delay, per_host) -> None:
    slots = HostSlots(delay=delay, per_host=per_host)
    now, sends, flying = 0.0, {A: [], B: []}, {A: 0, B: 0}
    for origin, advance, finish in steps:
        now += advance
        if finish and flying[origin]:
            slots.release(origin)
            flying[origin] -= 1
        elif slots.try_acquire(origin, now):
            sends[origin].append(now)
            flying[origin] += 1
        assert flying[origin] <= per_host
    for times in sends.values():
        assert all(b - a >= delay - 1e-9 for a, b in zip(times, times[1:], strict=False))


def test_throttle_slows_a_host_on_429_and_recovers_to_the_floor() -> None:
    from crawler.politeness import HostSlots
    from crawler.urls import Origin

    o = Origin("http", "127.0.1.1", 80)
    slots = HostSlots(delay=0.1, per_host=1)
    slots.set_crawl_delay(o, 0.2)
    slots.throttle(o, overloaded=True)
    assert slots.slot(o).delay == 0.4
    slots.throttle(o, overloaded=True)
    assert slots.slot(o).delay == 0.8
    for _ in range(50):
        slots.throttle(o, overloaded=False)
    assert slots.slot(o).delay == 0.2  # back to the floor: max(--delay, Crawl-delay), never below
    zero = HostSlots(delay=0.0, per_host=1)
    zero.throttle(o, overloaded=True)
    assert zero.slot(o).delay == 0.25
    for _ in range(100):
        zero.throttle(o, overloaded=False)
    assert zero.slot(o).delay == 0.0
    # the gap after a throttle-up applies from the last send
    assert zero.try_acquire(o, 10.0)
    zero.release(o)
    zero.throttle(o, overloaded=True)
    zero.answered(o, 10.0)
    assert not zero.try_acquire(o, 10.2) and zero.try_acquire(o, 10.25)


def test_a_resumed_crawl_counts_every_host_as_just_sent_to() -> None:
    slots = HostSlots(delay=1.0, per_host=1, resumed_at=50.0)
    origin = Origin("http", "a", 80)
    assert not slots.try_acquire(origin, 50.5)  # the killed run may have sent at 49.99
    slots.set_crawl_delay(origin, 2.5)  # a cached Crawl-delay counts from the resume too
    assert not slots.try_acquire(origin, 52.0) and slots.try_acquire(origin, 52.5)


def test_the_gap_counts_from_the_answer_less_only_the_slack() -> None:
    # sent at 10.0 (reserved until 11.0), answered at 10.5: the server may have logged it as late
    # as 10.5, so the next send waits until 11.5 less the slack, never more than the slack early
    slots = HostSlots(delay=1.0, per_host=1)
    o = Origin("http", "a", 80)
    assert slots.try_acquire(o, 10.0)
    slots.release(o)
    slots.answered(o, 10.5)
    assert 0 < ANSWER_SLACK <= 0.005  # within the 5 ms the server-side judgement tolerates
    assert not slots.try_acquire(o, 11.5 - ANSWER_SLACK - 1e-6)
    assert slots.try_acquire(o, 11.5 - ANSWER_SLACK)
