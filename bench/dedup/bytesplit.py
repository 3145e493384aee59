"""Where dedup's bytes read go on a tree (issue 18): rchar split by the files it reads.

`.venv/bin/python -m bench.dedup.bytesplit TREE [--threads N]` runs `python -m dedup --format
json -q TREE` twice: once plain, for rchar (/proc/PID/io of the finished process, its forked
processes included) and the groups; once under `strace -f -y` (read, readv, pread64, preadv,
preadv2), for the bytes each read returned and the file it read. Every byte of a file of the
tree is put in one row: the file is a duplicate (in a group) or unique, by size class; its reads
are heads (64 bytes at 0), middle probes (64 bytes at size // 2), edges (4 KiB at either end of
a large file) or the rest (whole reads, prefixes, rests, lockstep chunks). Bytes of a
duplicate's first full read are the minimum; the rest of them are excess (a negative row: bytes
of the head and probe not read again). Other files (Python's modules) are one row. Run it from
the directory holding the dedup to measure. Prints a table; writes nothing in the repository.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

_CALL = re.compile(r"^(\d+)\s+(read|pread64|preadv2|preadv|readv)\((\d+)<(.*?)>, (.*)$")
_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (read|pread64|preadv2|preadv|readv) resumed>(.*)$")
_RESULT = re.compile(r"\)\s+= (-?\d+)")
HEAD, PROBE, EDGE = 64, 64, 4096


def _rchar(argv: list[str], stdout: int | None) -> tuple[int, bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()  # type: ignore[union-attr]
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    with open(f"/proc/{proc.pid}/io", encoding="ascii") as f:
        io = {k: int(v) for k, v in (line.split(": ") for line in f if ": " in line)}
    proc.wait()
    return io["rchar"], out


def _parse(trace: str) -> list[tuple[str, str, int, int, int]]:
    """Return (syscall, path, requested, offset or -1, returned) for each successful read."""
    out = []
    pending: dict[str, tuple[str, str, str]] = {}
    with open(trace, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            m = _CALL.match(line)
            if m:
                pid, call, _fd, path, rest = m.groups()
                if rest.endswith("<unfinished ...>"):
                    pending[pid] = (call, path, rest[: -len("<unfinished ...>")].rstrip())
                    continue
            else:
                m = _RESUMED.match(line)
                if not m or m.group(1) not in pending:
                    continue
                pid = m.group(1)
                call, path, head = pending.pop(pid)
                rest = head + m.group(3)
            r = _RESULT.search(rest)
            if not r or int(r.group(1)) < 0:
                continue
            got = int(r.group(1))
            args = rest[: r.start()]
            nums = re.findall(r"(?:, |^)(\d+)(?=,|$)", args.replace("]", ""))
            if call == "read":
                out.append((call, path, int(nums[-1]) if nums else -1, -1, got))
            elif call == "pread64":
                out.append((call, path, int(nums[-2]), int(nums[-1]), got))
            else:  # preadv(fd, [iov...], n, offset[, flags])
                iov = re.findall(r"iov_len=(\d+)", args)
                tail = re.findall(r"\], (\d+), (\d+)", args)
                off = int(tail[0][1]) if tail else -1
                out.append((call, path, sum(map(int, iov)), off, got))
    return out


def _klass(size: int) -> str:
    if size <= 1024:
        return "<=1K"
    if size <= 2048:
        return "1-2K"
    if size <= 64 * 1024:
        return "2-64K"
    return ">64K"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup.bytesplit")
    parser.add_argument("tree")
    parser.add_argument("--threads", default=None)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--keep-trace", default=None, help="write the strace output here")
    parser.add_argument("--unique-list", default=None,
                        help="write the unique files read past head/probe (size, path) here")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.tree)
    cmd = [args.python, "-m", "dedup", "--format", "json", "-q", root]
    if args.threads:
        cmd[5:5] = ["--threads", args.threads]
    rchar, out = _rchar(cmd, None)
    report = json.loads(out)
    ids: dict[str, tuple[int, int, int]] = {}
    dup_inodes: set[tuple[int, int]] = set()
    minimum = 0
    for g in report["groups"]:
        for p in g["paths"]:
            st = os.lstat(p)
            key = (st.st_dev, st.st_ino)
            if key not in dup_inodes:
                dup_inodes.add(key)
                minimum += st.st_size
    trace = args.keep_trace or tempfile.mktemp(prefix="dedup-strace-")
    subprocess.run(["strace", "-f", "-y", "-s1", "-qq", "-o", trace, "-e",
                    "trace=read,readv,pread64,preadv,preadv2", *cmd], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reads = _parse(trace)
    if not args.keep_trace:
        os.unlink(trace)
    per_file: dict[tuple[int, int], list] = collections.defaultdict(list)
    sizes: dict[tuple[int, int], int] = {}
    paths: dict[tuple[int, int], str] = {}
    other = 0
    traced = 0
    for call, path, want, off, got in reads:
        traced += got
        if not path.startswith(root + "/") and path != root:
            other += got
            continue
        st = ids.get(path)
        if st is None:
            try:
                s = os.lstat(path)
            except OSError:
                other += got
                continue
            st = ids[path] = (s.st_dev, s.st_ino, s.st_size)
        key = st[:2]
        sizes[key] = st[2]
        paths.setdefault(key, path)
        per_file[key].append((call, want, off, got))
    rows: collections.Counter[tuple[str, str, str]] = collections.Counter()
    files: collections.Counter[tuple[str, str, str]] = collections.Counter()
    unique_read: list[tuple[int, str]] = []
    for key, rs in per_file.items():
        size = sizes[key]
        kind = "dup" if key in dup_inodes else "unique"
        klass = _klass(size)
        seen = collections.Counter()
        full = 0
        for _call, want, off, got in rs:
            if want == HEAD and off == 0 and size > HEAD:
                what = "head"
            elif want == PROBE and off == size // 2 and size > 2048:
                what = "probe"
            elif size > 64 * 1024 and want in (EDGE, EDGE + 1) and off in (0, size - EDGE, -1) and got <= EDGE:
                what = "edge"
            else:
                what = "whole/compare"
            rows[(kind, klass, what)] += got
            seen[what] += 1
            if what == "whole/compare":
                full += got
        for what in seen:
            files[(kind, klass, what)] += 1
        if kind == "dup":
            # the minimum is one full read: count it apart from the excess
            rows[(kind, klass, "MINIMUM (size)")] += size
            rows[(kind, klass, "whole/compare")] -= size
        elif full:
            unique_read.append((size, paths[key]))
    mib = 2**20
    print(f"tree {root}: rchar {rchar / mib:.1f} MiB, minimum {minimum / mib:.1f} MiB "
          f"({rchar / minimum:.3f}x); report bytes_read {report['stats']['bytes_read'] / mib:.1f}"
          f" MiB; traced {traced / mib:.1f} MiB (strace run)")
    print(f"{'kind':8} {'size':6} {'reads':18} {'MiB':>9} {'files':>7}")
    print(f"{'other':8} {'':6} {'modules etc.':18} {other / mib:9.2f}")
    for k in sorted(rows):
        print(f"{k[0]:8} {k[1]:6} {k[2]:18} {rows[k] / mib:9.2f} {files.get(k, 0):7}")
    excess = traced - minimum
    print(f"excess (traced - minimum): {excess / mib:.2f} MiB; traced/minimum "
          f"{traced / minimum:.3f}x")
    if args.unique_list:
        with open(args.unique_list, "w", encoding="utf-8", errors="surrogateescape") as f:
            for size, p in sorted(unique_read):
                f.write(f"{size}\t{p}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
