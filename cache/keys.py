"""Canonical memoize keys: equal for every spelling of one call, stable across processes.

`inspect.signature(fn).bind(*args, **kwargs)` plus `apply_defaults()` makes f(1, 2), f(1, b=2),
f(b=2, a=1), f(a=1, b=2) and f(1) (b defaulting to 2) one call (functools.lru_cache keys on the
spelling and runs the body 5 times; cachetools and diskcache 4). The bound arguments are then encoded
into bytes with a tagged, length-prefixed encoding that does not depend on hash seeds or dict order:
lists, dicts and sets are canonicalized rather than refused (dict items and set members sorted by
their encoding), and a list stays distinct from a tuple.

Untyped keys follow Python's equality, as lru_cache does: True, 1 and 1.0 are one argument. With
typed=True they are three.
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import Callable, Iterable
from typing import Any

_LEN = struct.Struct("<I")


def _int_bytes(value: int) -> bytes:
    # Binary, not decimal: str(int) refuses more than 4300 digits since Python 3.11.
    data = value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
    return b"i" + _LEN.pack(len(data)) + data


def _encode(value: Any, typed: bool, out: list[bytes], where: str) -> None:
    if value is None:
        out.append(b"N")
    elif isinstance(value, bool):
        out.append((b"?T" if value else b"?F") if typed else _int_bytes(int(value)))
    elif isinstance(value, int):
        out.append(_int_bytes(value))
    elif isinstance(value, float):
        if not typed and value.is_integer():
            out.append(_int_bytes(int(value)))  # 1.0 == 1: one key, as Python's equality says
        else:
            out.append(b"f" + value.hex().encode() + b";")
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        out.append(b"s" + _LEN.pack(len(data)) + data)
    elif isinstance(value, bytes | bytearray):
        out.append(b"b" + _LEN.pack(len(value)) + bytes(value))
    elif isinstance(value, tuple | list):
        out.append((b"(" if isinstance(value, tuple) else b"[") + _LEN.pack(len(value)))
        for item in value:
            _encode(item, typed, out, where)
    elif isinstance(value, dict):
        pairs = sorted(_encoded(k, typed, where) + _encoded(v, typed, where) for k, v in value.items())
        out.append(b"{" + _LEN.pack(len(pairs)))
        out.extend(pairs)
    elif isinstance(value, set | frozenset):
        members = sorted(_encoded(m, typed, where) for m in value)
        out.append(b"<" + _LEN.pack(len(members)))
        out.extend(members)
    else:
        raise TypeError(
            f"memoize cannot key argument {where!r} of type {type(value).__name__}: supported are None, "
            "bool, int, float, str, bytes and tuples, lists, dicts and sets of those (or list it in ignore=)"
        )


def _encoded(value: Any, typed: bool, where: str) -> bytes:
    out: list[bytes] = []
    _encode(value, typed, out, where)
    return b"".join(out)


class KeyMaker:
    """Builds the canonical key of a call to one function: (qualified name, canonical bytes)."""

    def __init__(self, fn: Callable[..., Any], *, typed: bool = False, ignore: Iterable[str] = ()) -> None:
        """Prepare keys for *fn*; *ignore* names parameters left out of the key."""
        self.signature = inspect.signature(fn)
        self.name = f"{fn.__module__}.{fn.__qualname__}"
        self.typed = typed
        self.ignore = frozenset(ignore)
        unknown = self.ignore - set(self.signature.parameters)
        if unknown:
            raise ValueError(f"ignore= names no parameter of {self.name}: {sorted(unknown)}")

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, bytes]:
        """Return the key of the call fn(*args, **kwargs); raise TypeError as the call itself would."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        out: list[bytes] = []
        for name, value in bound.arguments.items():
            if name in self.ignore:
                continue
            out.append(b"=" + name.encode() + b"=")
            _encode(value, self.typed, out, name)
        return (self.name, b"".join(out))
