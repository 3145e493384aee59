"""Private targets are refused on the resolved address, not on the name."""

from __future__ import annotations

import socket

import pytest

from crawler.fetcher import GuardedResolver
from crawler.guards import refuse_private
from crawler.urls import Origin


class FakeResolver:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict]:
        return [{"hostname": host, "host": ip, "port": port, "family": family, "proto": 0,
                 "flags": 0} for ip in self.table[host]]

    async def close(self) -> None:
        return None


async def test_names_resolving_to_private_addresses_are_refused() -> None:
    fake = FakeResolver({"evil.example": ["10.0.0.1"], "meta.example": ["169.254.169.254"],
                         "mixed.example": ["10.0.0.2", "93.184.216.34"],
                         "public.example": ["93.184.216.34"], "seed.example": ["127.0.0.1"]})
    guard = GuardedResolver(frozenset({"seed.example"}), fake)
    for name in ("evil.example", "meta.example"):
        with pytest.raises(OSError):
            await guard.resolve(name, 80)
    assert [r["host"] for r in await guard.resolve("mixed.example", 80)] == ["93.184.216.34"]
    assert [r["host"] for r in await guard.resolve("public.example", 80)] == ["93.184.216.34"]
    assert [r["host"] for r in await guard.resolve("seed.example", 80)] == ["127.0.0.1"]


def test_ip_literals_are_refused_before_any_request() -> None:
    assert refuse_private(Origin("http", "10.0.0.1", 80), frozenset({"127.0.1.1"}), False)
    assert not refuse_private(Origin("http", "127.0.1.1", 80), frozenset({"127.0.1.1"}), False)
