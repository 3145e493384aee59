"""robots.txt decisions (pure), after RFC 9309's three outcomes for fetching the file.

- §2.3.1.1 success (2xx): the rules of the body apply, as parsed by protego; only the first
  MAX_ROBOTS_BYTES are parsed (§2.5 lets a crawler cap at 500 KiB).
- §2.3.1.3 unavailable (4xx): the crawler may access any resource: allow all.
- §2.3.1.4 unreachable (5xx, or no answer): the crawler must assume complete disallow, for now.

Scrapy's middleware treats a failed download as "allow all"; here an unreachable robots.txt
allows nothing until it is fetched again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from protego import Protego

MAX_ROBOTS_BYTES = 500 * 1024
Outcome = Literal["rules", "allow-all", "disallow-all"]


@dataclass(frozen=True, slots=True)
class RobotsRules:
    """The access rules of one origin for one user agent."""

    outcome: Outcome
    user_agent: str
    parser: Protego | None = None
    unreachable: str | None = None  # why robots.txt could not be fetched ("connection refused")

    @classmethod
    def from_response(cls, status: int | None, body: bytes | None, user_agent: str,
                      reason: str | None = None) -> RobotsRules:
        """Decide from the robots.txt response: *status* None means unreachable (no HTTP answer,
        *reason* says why)."""
        if status is None or status >= 500:
            why = reason or ("no answer" if status is None else f"HTTP {status}")
            return cls("disallow-all", user_agent, unreachable=why)
        if 400 <= status < 500:
            return cls("allow-all", user_agent)
        if 200 <= status < 300:
            text = (body or b"")[:MAX_ROBOTS_BYTES].decode("utf-8-sig", errors="ignore")
            try:
                parser = Protego.parse(text)
            except Exception:  # a body protego cannot read is no rules at all (§2.2: be lenient)
                return cls("allow-all", user_agent)
            return cls("rules", user_agent, parser)
        # 1xx/3xx reaching here mean redirects were not followed to the end: treat as unreachable.
        return cls("disallow-all", user_agent, unreachable=reason or f"HTTP {status}")

    def allowed(self, url: str) -> bool:
        """True if the user agent may fetch *url*."""
        if self.outcome == "rules":
            assert self.parser is not None
            return bool(self.parser.can_fetch(url, self.user_agent))
        return self.outcome == "allow-all"

    @property
    def crawl_delay(self) -> float | None:
        """The Crawl-delay for the user agent in seconds (fractions kept), or None."""
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(self.user_agent)
        return float(delay) if delay is not None else None
