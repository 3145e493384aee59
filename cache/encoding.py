"""Stable key encoding and the value serializers of PersistentLRU.

Keys are str, bytes, int (bool counts as int, as Python's own equality does) or tuples of those. The
encoding is a bijection that does not depend on the Python version or the hash seed, so an equal key
always finds the same record.
"""

from __future__ import annotations

import functools
import json
import pickle
import struct
from collections.abc import Callable
from typing import Any, Protocol

from cache.errors import SerializationError

Key = str | bytes | int | tuple[Any, ...]
_LEN = struct.Struct("<I")


def encode_key(key: Any) -> bytes:
    """Return the stable byte encoding of *key*; raise TypeError for an unsupported key type."""
    if isinstance(key, str):
        return b"s" + key.encode("utf-8", "surrogatepass")
    if isinstance(key, bytes):
        return b"b" + key
    if isinstance(key, int):
        return b"i%d" % key
    if isinstance(key, tuple):
        parts = [b"t"]
        for item in key:
            enc = encode_key(item)
            parts.append(_LEN.pack(len(enc)))
            parts.append(enc)
        return b"".join(parts)
    raise TypeError(f"cache keys must be str, bytes, int or tuples of those, not {type(key).__name__}")


def decode_key(data: bytes) -> Key:
    """Invert encode_key; raise ValueError if *data* (bytes) is not an encoded key."""
    # Following other processes decodes each key they put (cache/index.py): one slice, and the
    # tag compared as an int, before the rarer cases.
    tag, body = data[0] if data else -1, data[1:]
    if tag == 115:  # b"s"
        return body.decode("utf-8", "surrogatepass")
    if tag == 105:  # b"i"
        if body.isdigit() or (body[:1] == b"-" and body[1:].isdigit()):
            return int(body)
        raise ValueError("bad integer key")
    if tag == 98:  # b"b"
        return bytes(body)
    if tag == 116:  # b"t"
        items, pos = [], 0
        while pos < len(body):
            if pos + 4 > len(body):
                raise ValueError("bad tuple key")
            (n,) = _LEN.unpack_from(body, pos)
            pos += 4
            if pos + n > len(body):
                raise ValueError("bad tuple key")
            items.append(decode_key(body[pos : pos + n]))
            pos += n
        return tuple(items)
    raise ValueError(f"unknown key tag {data[:1]!r}")


class Serializer(Protocol):
    """Turns values into bytes and back; `name` is stored in the file header."""

    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes | memoryview) -> Any: ...


class PickleSerializer:
    """Any picklable value. A pickle-serialized cache file must be trusted like code: keep it 0600."""

    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes | memoryview) -> Any:
        return pickle.loads(data)


class JSONSerializer:
    """JSON values (dicts with str keys, lists, str, numbers, bool, None); safe to load from anyone."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(self, data: bytes | memoryview) -> Any:
        return json.loads(bytes(data))


class BytesSerializer:
    """Raw bytes, stored as they are."""

    name = "bytes"

    def dumps(self, value: Any) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"serializer 'bytes' stores bytes, not {type(value).__name__}")
        return bytes(value)

    def loads(self, data: bytes | memoryview) -> Any:
        return bytes(data)


SERIALIZERS: dict[str, Serializer] = {
    s.name: s for s in (PickleSerializer(), JSONSerializer(), BytesSerializer())
}


def get_serializer(spec: str | Serializer) -> Serializer:
    """Return the serializer named *spec*, or *spec* itself if it is a serializer object."""
    if isinstance(spec, str):
        try:
            return SERIALIZERS[spec]
        except KeyError:
            raise ValueError(
                f"unknown serializer {spec!r}; choose one of {sorted(SERIALIZERS)} or pass an object "
                "with name, dumps and loads"
            ) from None
    if not all(hasattr(spec, a) for a in ("name", "dumps", "loads")):
        raise TypeError("a serializer needs a name and dumps/loads methods")
    return spec


def dump_value(serializer: Serializer, value: Any) -> bytes:
    """Serialize *value*, mapping the serializer's own errors to SerializationError."""
    try:
        return serializer.dumps(value)
    except Exception as exc:
        raise SerializationError(f"cannot serialize {type(value).__name__} with {serializer.name}: {exc}") from exc


def load_value(serializer: Serializer, data: bytes | memoryview, where: str) -> Any:
    """Deserialize an intact record's value, mapping any failure to SerializationError."""
    try:
        return serializer.loads(data)
    except Exception as exc:
        raise SerializationError(f"{where}: cannot deserialize value with {serializer.name}: {exc!r}") from exc


def direct_dumps(serializer: Serializer) -> Callable[[Any], bytes]:
    """Return pickle.dumps bound to the highest protocol for the built-in pickle serializer (a C
    call, no Python frame), else the serializer's dumps; a subclass that overrides dumps keeps its own."""
    if type(serializer).dumps is PickleSerializer.dumps:
        return functools.partial(pickle.dumps, protocol=pickle.HIGHEST_PROTOCOL)
    return serializer.dumps


def direct_loads(serializer: Serializer) -> Callable[[bytes], Any]:
    """Return the C function behind a built-in serializer's loads (a read gets bytes), else its loads.

    Saves a Python call per hit; a subclass that overrides loads keeps its own.
    """
    loads = type(serializer).loads
    if loads is PickleSerializer.loads:
        return pickle.loads
    if loads is BytesSerializer.loads:
        return bytes  # bytes(b) is b itself for the bytes a read returns
    return serializer.loads
