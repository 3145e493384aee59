"""dedup._ctable.add_sizes, SizeBuckets.add compiled for a forked walk's columns, against the
Python method: the same buckets (ints and arrays, in the same insertion order) and repeated sizes."""

from __future__ import annotations

from array import array

from hypothesis import given
from hypothesis import strategies as st

from dedup import table
from dedup._ctable import add_sizes
from dedup.table import SizeBuckets


def test_the_walk_merge_uses_the_compiled_buckets():
    assert table.add_sizes is add_sizes  # a broken build would fall back silently


@given(chunks=st.lists(st.lists(st.sampled_from([0, 1, 7, 4096, 2**40, 2**63 - 1, -1]),
                                max_size=30), max_size=8))
def test_chunks_of_sizes_bucket_as_the_python_method(chunks):
    python, compiled = SizeBuckets(), SizeBuckets()
    first = 0
    for chunk in chunks:
        python.add(chunk, first)
        compiled.add_int64s(array("q", chunk).tobytes(), first)
        first += len(chunk)
    assert list(compiled.by_size.items()) == list(python.by_size.items())
    assert compiled.repeated == python.repeated
    for bucket in compiled.by_size.values():
        assert type(bucket) is int or (type(bucket) is array and bucket.typecode == "I")


def test_a_column_not_of_int64s_is_refused():
    import pytest

    with pytest.raises(ValueError):
        add_sizes({}, [], b"\0" * 7, 0)


def test_no_object_is_left_behind():
    import gc
    import sys

    sizes = array("q", [5, 5, 6, 7, 7, 7]).tobytes()
    add_sizes({}, [], sizes, 0)  # once first: what the first call allocates for good
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(20_000):
        add_sizes({}, [], sizes, 0)
    gc.collect()
    assert sys.getallocatedblocks() - before < 1_000  # a leak per call would be 20,000 or more
