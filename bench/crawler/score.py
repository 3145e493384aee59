"""Score one crawl from the server's request log against the site's ground truth (pure)."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from urllib.parse import urlsplit

from crawler import InvalidURL, normalize_url
from fixtures.site import RequestRecord, Truth

TOLERANCE = 0.005  # the 5 ms at the server


@dataclass(frozen=True, slots=True)
class Score:
    """What a site owner and the truth say about one crawl."""

    requests: int
    useful: int  # required pages fetched
    missed: int  # required pages never fetched
    disallowed: int  # forbidden pages of seed hosts fetched (robots, nofollow, ...)
    out_of_scope: int  # pages of hosts outside the seeds fetched
    duplicates: int  # fetches of a normalized URL beyond the first (beyond may_repeat)
    robots_min: int  # robots.txt fetches: fewest and most per host
    robots_max: int
    min_gap: float  # smallest gap between two request arrivals at one host (seconds)
    violations: int  # gaps shorter than the host's required gap minus 5 ms
    max_in_flight: int  # most concurrent requests to one host
    span: float  # first to last request arrival


def score(requests: list[RequestRecord], truth: Truth, port: int, seed_hosts: set[str],
          delay: float) -> Score:
    """Judge *requests* (one crawl) by *truth*; *delay* is the gap the crawl was asked for."""
    fetched: collections.Counter[str] = collections.Counter()
    robots: collections.Counter[str] = collections.Counter()
    for r in requests:
        if r.path in truth.robots_paths:
            robots[r.host] += r.path == "/robots.txt"
            continue
        raw = f"http://{r.host}:{port}{r.path}"
        try:
            fetched[normalize_url(raw)] += 1
        except InvalidURL:
            fetched[raw] += 1
    forbidden = [u for u in fetched if u in truth.must_not_fetch]
    outside = sum(urlsplit(u).hostname not in seed_hosts for u in forbidden)
    times: dict[str, list[float]] = collections.defaultdict(list)
    for r in requests:
        times[r.host].append(r.t)
    min_gap, violations = float("inf"), 0
    for host, ts in times.items():
        ts.sort()
        wanted = max(delay, truth.crawl_delays.get(host, 0.0))
        for a, b in zip(ts, ts[1:], strict=False):
            min_gap = min(min_gap, b - a)
            violations += wanted > 0 and b - a < wanted - TOLERANCE
    arrivals = [r.t for r in requests]
    return Score(
        requests=len(requests),
        useful=len(truth.must_fetch & fetched.keys()),
        missed=len(truth.must_fetch - fetched.keys()),
        disallowed=len(forbidden) - outside,
        out_of_scope=outside,
        duplicates=sum(max(0, n - truth.may_repeat.get(u, 1)) for u, n in fetched.items()),
        robots_min=min((robots[h] for h in seed_hosts), default=0),
        robots_max=max((robots[h] for h in seed_hosts), default=0),
        min_gap=min_gap,
        violations=violations,
        max_in_flight=max((r.in_flight for r in requests), default=0),
        span=max(arrivals) - min(arrivals) if arrivals else 0.0,
    )
