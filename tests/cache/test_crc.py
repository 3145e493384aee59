"""The log's checksum: the fast implementation gives zlib's CRC-32 bit for bit, so files move freely."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cache
from cache import PersistentLRU, crc

_USERS = ("catchup", "compact", "follow", "log", "reads", "records", "sharedlog")


def test_the_fast_implementation_is_installed() -> None:
    # zlib-ng is a dependency: a broken install would silently cost ~3x the CRC time.
    assert crc.IMPLEMENTATION == "zlib_ng.zlib_ng"


@given(st.binary(max_size=9000), st.integers(0, 2**32 - 1), st.integers(0, 64), st.integers(0, 64))
def test_values_are_zlibs(data: bytes, seed: int, cut_head: int, cut_tail: int) -> None:
    assert crc.crc32(data) == zlib.crc32(data)
    assert crc.crc32(data, seed) == zlib.crc32(data, seed)
    view = memoryview(data)[cut_head : max(cut_head, len(data) - cut_tail)]
    assert crc.crc32(view, seed) == zlib.crc32(view, seed)


def _use(monkeypatch: pytest.MonkeyPatch, function) -> None:  # noqa: ANN001
    for name in _USERS:
        monkeypatch.setattr(getattr(cache, name), "_crc32", function)
    monkeypatch.setattr(cache.shared, "crc32", function)


@pytest.mark.parametrize("writer", ["fast", "stdlib"])
def test_a_file_written_by_one_reads_with_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    path = tmp_path / "c.lru"
    first, second = (crc.crc32, zlib.crc32) if writer == "fast" else (zlib.crc32, crc.crc32)
    values = {f"k{i}": bytes([i]) * (i * 37 % 4000) for i in range(200)}
    with monkeypatch.context() as patch:
        _use(patch, first)
        with PersistentLRU(path, capacity=150) as lru:
            for key, value in values.items():
                lru[key] = value
            assert lru.get("k60") == values["k60"]
            lru.compact()
            del lru["k199"]
    _use(monkeypatch, second)
    with PersistentLRU(path, capacity=150) as lru:
        expected = [f"k{i}" for i in range(50, 199)]  # k0-k49 evicted by the puts, k199 deleted
        assert sorted(lru) == sorted(expected)
        assert all(lru[key] == values[key] for key in expected)
