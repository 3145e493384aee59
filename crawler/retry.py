"""Pure retry policy: which outcomes are transient, exponential backoff with full jitter, and
Retry-After (RFC 9110 §10.2.3: delay-seconds or an HTTP-date), capped."""

from __future__ import annotations

import email.utils
from collections.abc import Callable

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


def backoff(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Full jitter (AWS architecture blog, 2015): uniform in [0, min(cap, base * 2**attempt)]."""
    return rand() * min(cap, base * (2.0**attempt))


def parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Seconds to wait from a Retry-After header at wall time *now_wall*, or None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_wall)
