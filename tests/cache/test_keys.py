"""Canonical memoize keys: every spelling of a call is one key; different calls never collide."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cache.keys import KeyMaker


def f(a, b=2, *rest, c=3, **extra):  # noqa: ANN001, ANN002, ANN003, ANN201
    return a


def key(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201
    return KeyMaker(f)(args, kwargs)


def test_equivalent_spellings_are_one_key() -> None:
    def g(a, b=2):  # noqa: ANN001, ANN202
        return a

    make = KeyMaker(g)
    keys = {make((1, 2), {}), make((1,), {"b": 2}), make((), {"b": 2, "a": 1}), make((), {"a": 1, "b": 2}),
            make((1,), {})}
    assert len(keys) == 1


def test_kwargs_order_and_unhashables_are_canonical() -> None:
    assert key(1, x=1, y=2) == key(1, y=2, x=1)
    assert key({"x": [1, 2], "y": {3, 4}}) == key({"y": {4, 3}, "x": [1, 2]})
    assert key([1, 2]) != key((1, 2))
    assert key([1, 2]) != key([2, 1])


def test_typed_separates_bool_int_float() -> None:
    untyped = KeyMaker(f)
    typed = KeyMaker(f, typed=True)
    assert untyped((1,), {}) == untyped((True,), {}) == untyped((1.0,), {})
    assert len({typed((1,), {}), typed((True,), {}), typed((1.0,), {})}) == 3


def test_ignore_leaves_a_parameter_out_and_rejects_unknown_names() -> None:
    make = KeyMaker(f, ignore=("c",))
    assert make((1,), {"c": 10}) == make((1,), {"c": 20})
    with pytest.raises(ValueError, match="no parameter"):
        KeyMaker(f, ignore=("nope",))


def test_unsupported_arguments_name_the_parameter() -> None:
    with pytest.raises(TypeError, match="argument 'a'"):
        key(object())
    with pytest.raises(TypeError):
        key()  # the call itself is wrong: a is missing


ATOMS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(), st.binary())
VALUES = st.recursive(
    ATOMS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8,
)


def norm(v: object) -> object:
    """An independent model of typed argument identity: type-tagged, dicts unordered."""
    if isinstance(v, dict):
        return ("dict", frozenset((norm(k), norm(x)) for k, x in v.items()))
    if isinstance(v, list | tuple):
        return (type(v).__name__, tuple(norm(x) for x in v))
    if isinstance(v, float):
        return ("float", v.hex())
    return (type(v).__name__, v)


@given(VALUES, VALUES)
def test_keys_are_equal_exactly_when_the_arguments_are(x, y) -> None:
    make = KeyMaker(f, typed=True)
    assert (make((x,), {}) == make((y,), {})) == (norm(x) == norm(y))
    assert make((x,), {}) == make((x,), {})


def test_huge_and_negative_ints_are_keyed() -> None:
    make = KeyMaker(lambda a: a)
    big = 10**5000  # beyond Python's 4300-digit str(int) limit
    assert make((big,), {}) == make((big,), {})
    assert make((big,), {}) != make((big + 1,), {})
    assert make((-1,), {}) != make((255,), {}) != make((-256,), {})
    assert make((2.0**80,), {}) == make((2**80,), {})


def g(a, b=2, *rest, c=None, **extra):  # noqa: ANN001, ANN002, ANN003, ANN202
    return a


@given(VALUES, VALUES, st.dictionaries(st.sampled_from(["x", "y", "z"]), VALUES, max_size=3))
def test_every_spelling_of_one_call_is_one_key(a, c, extra) -> None:
    make = KeyMaker(g)
    spellings = [
        ((a, 2), {"c": c, **extra}),
        ((a,), {"b": 2, "c": c, **extra}),
        ((), {**dict(reversed(list(extra.items()))), "c": c, "b": 2, "a": a}),
        ((a,), {**extra, "c": c}),  # b by its default
    ]
    assert len({make(args, kwargs) for args, kwargs in spellings}) == 1
