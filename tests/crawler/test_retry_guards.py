"""Pure retry policy and admission guards."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.config import CrawlConfig
from crawler.guards import is_private_address, refuse_private, trap_reason
from crawler.retry import backoff, parse_retry_after
from crawler.urls import Origin


@settings(max_examples=200)
@given(st.integers(0, 20), st.floats(0, 1, exclude_max=True))
def test_backoff_is_full_jitter_under_an_exponential_cap(attempt: int, r: float) -> None:
    wait = backoff(attempt, 0.5, 30.0, lambda: r)
    assert 0 <= wait <= min(30.0, 0.5 * 2**attempt)
    assert wait == r * min(30.0, 0.5 * 2**attempt)


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7", 0.0) == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490.0) == 0.0
    assert parse_retry_after("soon", 0.0) is None and parse_retry_after(None, 0.0) is None


def test_private_addresses_are_refused_unless_seed_or_allowed() -> None:
    for host in ("10.0.0.1", "192.168.1.1", "127.0.0.1", "169.254.1.1", "224.0.0.1", "[::1]",
                 "[fe80::1]", "0.0.0.0"):
        assert is_private_address(host), host
    assert not is_private_address("93.184.216.34") and not is_private_address("example.com")
    o = Origin("http", "10.0.0.1", 80)
    assert refuse_private(o, frozenset(), False)
    assert not refuse_private(o, frozenset({"10.0.0.1"}), False)
    assert not refuse_private(o, frozenset(), True)


def test_trap_guards() -> None:
    cfg = CrawlConfig(max_url_length=60, max_path_segments=4, max_segment_repeats=2)
    assert trap_reason("http://a/x/y", cfg) is None
    assert trap_reason("http://a/" + "x" * 80, cfg) == "url too long"
    assert trap_reason("http://a/1/2/3/4/5", cfg) == "path too deep"
    assert trap_reason("http://a/c/c/c", cfg) == "repeated path segment"
