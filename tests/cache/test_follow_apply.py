"""cache/follow.py apply_published: the records of whole writes applied in order, on bytes (no files)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cache import records as fmt
from cache.follow import Index, apply_published

writes = st.lists(
    st.lists(st.tuples(st.sampled_from([fmt.PUT, fmt.TOUCH, fmt.DELETE]), st.sampled_from([b"a", b"bb", b"ccc"]),
                       st.binary(max_size=20)), min_size=1, max_size=3),
    max_size=8,
)


def encode(groups: list[list[tuple[int, bytes, bytes]]], seq: int) -> tuple[bytes, list[int], list[Any]]:
    """The records of *groups* from *seq* on, the offset after each whole write, and the calls each
    write makes of the index (as recording_index records them), per write."""
    out, ends, calls = b"", [], []
    for group in groups:
        made = []
        for i, (kind, key, value) in enumerate(group):
            value = value if kind == fmt.PUT else b""
            record = fmt.encode_record(kind if i == len(group) - 1 else kind | fmt.MORE, seq, key, value)
            if len(group) == 1 and kind == fmt.TOUCH:
                made.append(("touch", key.decode()))
            else:
                made.append(("apply", kind, key, 100 + len(out), len(record), len(value)))
            out += record
            seq += 1
        ends.append(len(out))
        calls.append(made)
    return out, ends, calls


def recording_index(present: set[str]) -> tuple[Index, list[Any]]:
    """An index whose decoded keys are the str of the bytes (b"a" and b"bb" decoded already) and
    whose order holds *present*; it records every move and every apply."""
    calls: list[Any] = []

    def move(key: Any) -> None:
        if key not in present:
            raise KeyError(key)
        calls.append(("touch", key))

    def apply(*args: Any) -> None:
        calls.append(("apply", *args))

    def put(*args: Any) -> None:
        calls.append(("apply", fmt.PUT, *args))

    def key_of(kbytes: bytes, _offset: int) -> str:
        if kbytes not in decoded:
            calls.append(("decoded", kbytes))  # only a key not decoded yet costs a decode
        return kbytes.decode()

    decoded = {b"a": "a", b"bb": "bb"}

    return Index(decoded, key_of, move, apply, put), calls


@given(writes, st.data())
def test_whole_writes_are_applied_in_order_and_a_cut_one_is_not(groups: list[list[tuple[int, bytes, bytes]]],
                                                                 data: st.DataObject) -> None:
    raw, ends, per_write = encode(groups, 7)
    cut = data.draw(st.integers(0, len(raw)))
    whole = [end for end in ends if end <= cut]
    index, calls = recording_index({"a", "ccc"})
    pos, seq = apply_published(raw, 0, cut, 100, 7, index)
    assert pos == (whole[-1] if whole else 0)
    assert seq == 7 + sum(len(g) for g in groups[: len(whole)])
    expected = []
    for made in per_write[: len(whole)]:
        for call in made:
            if call[0] == "touch":
                if call[1] == "ccc":
                    expected.append(("decoded", b"ccc"))  # not among the decoded keys: decoded first
                if call[1] != "bb":
                    expected.append(call)  # "bb" is gone from the order: its touch moves nothing
            else:
                expected.append(call)
    assert calls == expected


def test_a_record_out_of_sequence_stops_the_walk_before_it() -> None:
    raw = fmt.encode_record(fmt.TOUCH, 7, b"a") + fmt.encode_record(fmt.TOUCH, 9, b"a")
    index, calls = recording_index({"a"})
    assert apply_published(raw, 0, len(raw), 0, 7, index) == (len(raw) // 2, 8)
    assert calls == [("touch", "a")]


def test_an_unknown_kind_stops_the_walk_before_it() -> None:
    first = fmt.encode_record(fmt.TOUCH, 7, b"a")
    raw = first + fmt.encode_record(0x33, 8, b"a")
    index, calls = recording_index({"a"})
    assert apply_published(raw, 0, len(raw), 0, 7, index) == (len(first), 8)
    assert calls == [("touch", "a")]


def test_a_key_this_open_put_is_found_by_its_bytes_when_another_touches_it(tmp_path: Any) -> None:
    from cache import PersistentLRU
    from cache.encoding import encode_key

    path = tmp_path / "c.lru"
    with PersistentLRU(path, capacity=10, serializer="bytes") as a, PersistentLRU(path, serializer="bytes") as b:
        a["x"] = b"X"
        a[7] = b"7"
        a[True] = b"T"  # a bool: decoded as the int 1, so not remembered as it was put
        assert a._keys[encode_key("x")] == "x" and a._keys[encode_key(7)] == 7
        assert encode_key(True) not in a._keys
        a["y"] = b"Y"
        assert b["x"] == b"X"  # b touches "x": a follows that touch without decoding the key
        assert list(a) == list(b) == [7, 1, "y", "x"]
