"""cache/follow.py: check_span against the record format, on bytes (no files, no processes)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cache import records as fmt
from cache.follow import Index, apply_checked, check_span

# A write: one record, or a group (every record but the last carries MORE).
writes = st.lists(
    st.lists(st.tuples(st.sampled_from([fmt.PUT, fmt.TOUCH, fmt.DELETE]), st.binary(min_size=1, max_size=6),
                       st.binary(max_size=20)), min_size=1, max_size=3),
    max_size=8,
)


def encode(groups: list[list[tuple[int, bytes, bytes]]], seq: int = 7) -> tuple[bytes, list[int]]:
    """The records of *groups* from *seq* on, and the offset after each whole write."""
    out, ends = b"", []
    for group in groups:
        for i, (kind, key, value) in enumerate(group):
            value = value if kind == fmt.PUT else b""
            out += fmt.encode_record(kind if i == len(group) - 1 else kind | fmt.MORE, seq, key, value)
            seq += 1
        ends.append(len(out))
    return out, ends


def recording_index() -> tuple[Index, list[Any]]:
    calls: list[Any] = []

    def move(key: Any) -> None:
        calls.append(("touch", key))

    def apply(*args: Any) -> None:
        calls.append(("apply", *args))

    def put(*args: Any) -> None:
        calls.append(("apply", fmt.PUT, *args))

    return Index({}, lambda kbytes, _offset: kbytes, move, apply, put), calls


@given(writes)
def test_intact_records_pass_whole(groups: list[list[tuple[int, bytes, bytes]]]) -> None:
    data, ends = encode(groups)
    count = sum(len(g) for g in groups)
    assert check_span(data, 0, len(data), 7) == (len(data), 7 + count, None)


@given(writes.filter(lambda g: len(g) > 0), st.data())
def test_a_flipped_byte_stops_the_check_before_its_write(groups: list[list[tuple[int, bytes, bytes]]],
                                                        data: st.DataObject) -> None:
    raw, ends = encode(groups)
    at = data.draw(st.integers(0, len(raw) - 1))
    damaged = bytearray(raw)
    damaged[at] ^= 1 << data.draw(st.integers(0, 7))
    good, _seq, wrong = check_span(bytes(damaged), 0, len(raw), 7)
    assert wrong is not None
    assert good in [0, *ends] and good <= at  # a whole-write boundary before the damage
    index, calls = recording_index()
    assert apply_checked(bytes(damaged), 0, len(raw), 7, index)[0] == good
    intact_index, intact_calls = recording_index()
    apply_checked(raw[:good], 0, good, 7, intact_index)
    assert calls == intact_calls  # nothing past the checked part was applied
