"""The log format's checksum: CRC-32 with zlib's polynomial, from the fastest implementation.

zlib-ng's crc32 (the zlib-ng package, a dependency) folds with PCLMULQDQ/VPCLMULQDQ where the CPU
has them: on this project's bench machine 458 ns against the standard library's 1,752 ns for one
record's three CRCs (header fields, key, 256-4096-byte value; `python -m bench.cache.crc_speed
crc`). Its values are zlib's, bit for bit (tests/cache/test_crc.py), so files written with either
read with either; without the package the standard library's zlib.crc32 is used. Its import costs
2-5 ms here (`python -X importtime`: the extension imports gzip), once a process.
"""

from __future__ import annotations

try:
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - the dependency is installed with fanmill
    from zlib import crc32

IMPLEMENTATION = crc32.__module__

__all__ = ["IMPLEMENTATION", "crc32"]
