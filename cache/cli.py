"""`python -m cache stats|verify|compact PATH`: inspect, check and compact a PersistentLRU file."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cache import records as fmt
from cache.errors import CacheError, CorruptStoreError, ForeignFileError
from cache.persistent import PersistentLRU

EPILOG = """exit status:
  0  success (verify: every record intact)
  1  the file is damaged, locked by a writer, or could not be read
  2  usage error"""


class _Opaque:
    """Stands in for the file's own serializer: the inspector handles values as raw bytes."""

    def __init__(self, name: str) -> None:
        self.name = name

    def dumps(self, value: Any) -> bytes:
        raise CacheError("the inspector never writes values")

    def loads(self, data: bytes | memoryview) -> Any:
        return bytes(data)


def read_meta(path: str) -> dict[str, Any]:
    """Return the metadata in the header of the record log at *path*; raise CorruptStoreError."""
    try:
        with open(path, "rb") as f:
            head = f.read(fmt.min_header_size() + fmt.MAX_META_SIZE)
    except IsADirectoryError:
        raise ForeignFileError(path, "is a directory") from None
    except OSError as exc:
        raise CorruptStoreError(path, f"cannot read: {exc.strerror}") from None
    try:
        return fmt.decode_header(head).meta
    except fmt.FormatError as err:
        cls = ForeignFileError if err.foreign else CorruptStoreError
        raise cls(path, err.detail, err.offset) from None


def _open(path: str, *, readonly: bool, salvage: bool = False) -> PersistentLRU:
    meta = read_meta(path)
    return PersistentLRU(
        path, readonly=readonly, salvage=salvage,  # no bounds given: the file's own are kept
        serializer=_Opaque(str(meta.get("serializer"))),
    )


def _short(key: object, width: int = 60) -> str:
    text = repr(key)
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args.path, readonly=True) as lru:
        s = lru.stats()
        keys = list(lru)
        serializer = lru._serializer.name
    print(f"file:          {args.path}")
    print(f"serializer:    {serializer}")
    print(f"entries:       {s.entries}")
    print(f"bytes:         {s.bytes} (keys and values)")
    print(f"file size:     {s.file_bytes} bytes, {s.dead_ratio:.1%} reclaimable by compaction")
    if s.torn_tail_bytes:
        print(f"torn tail:     {s.torn_tail_bytes} bytes (cut off at the next writable open)")
    n = args.show
    print(f"least recent:  {', '.join(_short(k) for k in keys[:n]) or '-'}")
    print(f"most recent:   {', '.join(_short(k) for k in reversed(keys[-n:])) or '-'}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    # Opening replays every record and checks both checksums of each; reading each live value back
    # checks them again against the index, as every read does.
    with _open(args.path, readonly=True) as lru:
        for key in lru:
            lru.peek(key)
        s = lru.stats()
    if s.torn_tail_bytes:
        print(f"{args.path}: ok, {s.entries} entries; a torn tail of {s.torn_tail_bytes} bytes "
              "(an interrupted write) will be cut off at the next writable open")
    else:
        print(f"{args.path}: ok, {s.entries} entries, every record intact")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    before = os.path.getsize(args.path)
    with _open(args.path, readonly=False, salvage=args.salvage) as lru:
        lru.compact()
        s = lru.stats()
    if s.salvaged_records_lost:
        print(f"{args.path}: salvaged, {s.salvaged_records_lost} damaged records dropped", file=sys.stderr)
    print(f"{args.path}: {before} -> {s.file_bytes} bytes, {s.entries} entries")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `python -m cache`."""
    parser = argparse.ArgumentParser(
        prog="python -m cache",
        description="Inspect, verify or compact a fanmill PersistentLRU file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("stats", help="entries, bytes, dead ratio, recency head and tail (read-only)")
    p.add_argument("path", metavar="PATH", help="the cache file")
    p.add_argument("--show", type=int, default=5, metavar="N", help="keys shown at each end (default 5)")
    p.set_defaults(run=cmd_stats)
    p = sub.add_parser("verify", help="check every record's checksums (read-only); exit 1 on damage")
    p.add_argument("path", metavar="PATH", help="the cache file")
    p.set_defaults(run=cmd_verify)
    p = sub.add_parser("compact", help="rewrite the file with only its live entries (takes the writer lock)")
    p.add_argument("path", metavar="PATH", help="the cache file")
    p.add_argument("--salvage", action="store_true",
                   help="drop damaged records instead of refusing a damaged file (reports how many)")
    p.set_defaults(run=cmd_compact)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the inspector; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except CacheError as exc:
        print(f"python -m cache: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Quiet exit when piped into `head`; stdout is gone, so point it at devnull for the shutdown.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
