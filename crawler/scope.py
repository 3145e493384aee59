"""Which URLs a crawl may fetch (pure): the seeds' origins, plus hosts matching --allow-host globs."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from crawler.errors import InvalidURL
from crawler.urls import Origin, normalize_url, origin_of


@dataclass(frozen=True, slots=True)
class Scope:
    """The seeds' exact origins (scheme, host, port) and host globs that extend them."""

    origins: frozenset[Origin]
    host_globs: tuple[str, ...] = ()

    @classmethod
    def from_seeds(cls, seeds: Iterable[str], allow_host_globs: Iterable[str] = ()) -> Scope:
        """Build the scope of a crawl; raise InvalidURL for a seed that is not an http(s) URL."""
        origins = frozenset(origin_of(normalize_url(seed)) for seed in seeds)
        return cls(origins, tuple(g.lower() for g in allow_host_globs))

    def allows(self, url: str) -> bool:
        """True if *url* is in scope: a seed origin, or a host matching a glob (any scheme and port)."""
        try:
            origin = origin_of(url)
        except InvalidURL:
            return False
        if origin in self.origins:
            return True
        return any(fnmatch.fnmatchcase(origin.host, glob) for glob in self.host_globs)
