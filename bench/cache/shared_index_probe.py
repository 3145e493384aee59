"""Is an index the processes share fast enough? A probe of its core cost before building it (issue 17).

`python -m bench.cache.shared_index_probe [--processes 1,2,4,8] [--ops N] [--rounds R]`

Today every open keeps its own index and replays every record the others append: at 8 processes
following cost 16.1 of 36.3 us of CPU an operation (bench/cache/lockhold.py), and 10x diskcache on
2 cores allows about 22. The alternative (SQLite's wal-index/-shm) is one index in a shared map,
changed under the writer lock: nothing to follow, but each lookup and each move costs struct calls
on the map instead of a dict operation. This measures that, stdlib only, as cache/ would build it:

    ShmIndex   an open-addressing table (u32 entry numbers, linear probing, backward-shift
               deletion, zlib.crc32 of the key bytes: Python's hash() differs per process) and a
               doubly linked recency list of 32-byte entries in one mmap; the key bytes stay in the
               log (an entry holds the offset of its record; a lookup compares the hash, the length,
               then the bytes in the log); bounds by entries and bytes, evicting from the tail.

1. One process, index only, on the bench trace: a hit = lookup + move to front; a miss = put
   (insert, evict). Against RecencyOrder (cache/order.py: an OrderedDict) doing the same.
2. The whole path an operation would take, at n forked processes playing ops[i::n] as
   bench/cache/multiproc.py does (its own _play loop: the same timing and checks): the writer lock
   (flock, the wait loop of cache/catchup.py without following), the header read, the index
   operation, a TOUCH or PUT record appended to a mapped log, the header published, unlock, and a
   hit's value read and CRC-checked after the lock. No thread lock, no closed checks, no compaction:
   a lower bound of what a real implementation costs. PersistentLRU (main's code) runs in the same
   rounds, alternated (and diskcache's LRU with --diskcache): ratios within one run, medians.
   After each probe run the shared index is checked (links, counts, every entry found by its key)
   and its order compared with an OrderedDict LRU replaying the log: equal in every run so far.

First full run (83435f3's cache/; bench/.venv-cache/bin/python -m bench.cache.shared_index_probe
--processes 1,2,4,8 --ops 100000 --rounds 5 --diskcache; 2-core shared machine, quiet then):
index only, one process: ShmIndex 2.55 us a trace operation against RecencyOrder's 0.50 (x5.1).
Whole path, medians of 5 rounds (CPU us per op; x diskcache LRU within each round, then the median):

    processes   main                   probe                  probe/main ops/s
    1           7.9 us, 15.0x          9.7 us, 12.0x          x0.68 (main alone is the sole open)
    2           20.0 us, 10.5x         17.8 us, 12.3x         x1.17 (pairs 1.12-1.37)
    4           26.5 us, 8.9x          18.2 us, 12.9x         x1.44 (pairs 1.35-1.55)
    8           32.7 us, 6.7x          19.2 us, 11.8x         x1.76 (pairs 1.48-2.33)

0 lost, 0 garbage for main and the probe in every round. The probe's wait loop matters at 8
processes: blocking in flock at once (LOCK_TRIES 0) cut CPU to ~17.5 us an op but ops/s to ~60k
(3 rounds, a busier machine); 512 tries as in cache/catchup.py is what the table shows.
"""

from __future__ import annotations

import argparse
import fcntl
import mmap
import multiprocessing
import os
import shutil
import statistics
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

from bench.cache.shm_index import ShmIndex

WORK = os.path.join(os.path.dirname(__file__), "..", ".work", "cache", "shared_index_probe")
CAPACITY = 20_000

_REC_HEAD = 25  # cache/records.py: body_crc, head_crc, kind, seq, klen, vlen
_crc32 = zlib.crc32


# -- 1. one process, index only -----------------------------------------------------------------

def index_only(ops: list, values: list) -> dict[str, float]:
    """µs per trace operation (hit: lookup + move; miss: put) for ShmIndex and RecencyOrder."""
    from cache.encoding import encode_key
    from cache.order import RecencyOrder

    keys = {k: encode_key(k) for k, _g in ops}
    nv = len(values)
    log = bytearray(64 << 20)  # records reduced to their headers and keys
    buf = mmap.mmap(-1, ShmIndex.size_for(CAPACITY))
    idx = ShmIndex(buf, CAPACITY, None, log)
    idx.init()
    get, put = idx.get, idx.put
    off = 64
    t = time.process_time()
    for key, _is_get in ops:
        kb = keys[key]
        if get(kb) is None:
            log[off + _REC_HEAD : off + _REC_HEAD + len(kb)] = kb
            put(kb, off, 100, len(values[key % nv]))
            off += _REC_HEAD + len(kb)
    shm = time.process_time() - t
    order = RecencyOrder(CAPACITY, None)
    lookup, move = order.lookup, order.move_to_end
    t = time.process_time()
    for key, _is_get in ops:
        if lookup(key) is None:
            off += 1
            order.load_evicting(key, [off, 100, keys[key]], len(values[key % nv]))
        else:
            move(key)
    od = time.process_time() - t
    lru_keys = [bytes(log[o + _REC_HEAD : o + _REC_HEAD + len(keys[k])]) for o, k in zip(idx.keys_lru(), order, strict=True)]
    assert lru_keys == [keys[k] for k in order], "ShmIndex's order differs from RecencyOrder's"
    return {"shm_us": shm / len(ops) * 1e6, "od_us": od / len(ops) * 1e6}


# -- 2. the whole path at n processes -------------------------------------------------------------

_HDR = struct.Struct("<QQQQQ")  # gen, compacting, end, next_seq, dirty (cache/shared.py's fields)
_FINISH = struct.Struct("<QQQQQQI")
_SNAP3 = struct.Struct("<QQQ").pack
_FIELDS = struct.Struct("<BQII").pack
_PACK_HEAD = struct.Struct("<IIBQII").pack
_UNPACK_HEAD = struct.Struct("<IIBQII").unpack_from
_LOG_SIZE = 512 << 20
_WRITING = (1 << 64) - 1
LOCK_TRIES = 512  # as cache/catchup.py's wait loop: yield and try again, then block in the kernel


def _probe_opener(path: str, capacity: int, mean_value: float) -> tuple[Callable, Callable, Callable]:
    """get/set/close of the prototype path (bench/cache/multiproc.py's opener signature)."""
    return _open_probe(path, capacity)[:3]


def _open_probe(path: str, capacity: int) -> tuple[Callable, Callable, Callable, ShmIndex]:
    """get, set, close and the index of the prototype path on the files in *path* (own fds: own locks)."""
    from cache.encoding import encode_key

    lfd = os.open(os.path.join(path, "probe.lock"), os.O_RDWR)
    hmm = mmap.mmap(lfd, mmap.PAGESIZE + ShmIndex.size_for(capacity))
    fd = os.open(os.path.join(path, "probe.log"), os.O_RDWR)
    mm = mmap.mmap(fd, _LOG_SIZE)
    try:  # as cache/growth.py maps the log's zero tail: no fault per page while appending
        mm.madvise(getattr(mmap, "MADV_POPULATE_WRITE", 23))
    except OSError:
        pass
    mv = memoryview(hmm)[mmap.PAGESIZE:]
    idx = ShmIndex(mv, capacity, None, mm)
    flock, yield_ = fcntl.flock, os.sched_yield
    ex, ex_nb, un = fcntl.LOCK_EX, fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_UN
    iget, iput = idx.get, idx.put
    encoded: dict[Any, bytes] = {}  # encode_key's results: a pure function, so any process may cache them

    def encode(key: Any) -> bytes:
        k = encoded.get(key)
        if k is None:
            if len(encoded) > 4 * capacity:
                encoded.clear()
            k = encoded[key] = encode_key(key)
        return k

    def begin() -> tuple[int, int]:
        try:
            flock(lfd, ex_nb)
        except BlockingIOError:
            for _ in range(LOCK_TRIES):
                yield_()
                try:
                    flock(lfd, ex_nb)
                    break
                except BlockingIOError:
                    pass
            else:
                flock(lfd, ex)
        gen, comp, end, seq, dirty = _HDR.unpack_from(hmm, 8)
        if dirty != end:
            raise RuntimeError("a writer died: rebuild (not in the probe)")
        struct.pack_into("<Q", hmm, 40, _WRITING)  # dirty: index and log being changed
        return end, seq

    def finish(end: int, seq: int) -> None:
        _FINISH.pack_into(hmm, 24, end, seq, end, 1, end, seq, _crc32(_SNAP3(1, end, seq)))
        flock(lfd, un)

    def append(kind: int, seq: int, end: int, k: bytes, v: bytes) -> int:
        klen, vlen = len(k), len(v)
        head_crc = _crc32(_FIELDS(kind, seq, klen, vlen))
        head = _PACK_HEAD(_crc32(v, _crc32(k, head_crc)), head_crc, kind, seq, klen, vlen) + k
        vstart = end + len(head)
        mm[end:vstart] = head
        mm[vstart:vstart + vlen] = v
        return vstart + vlen

    def get(key: Any) -> Any:
        k = encode(key)
        end, seq = begin()
        try:
            loc = iget(k)
            if loc is not None:
                end = append(3, seq, end, k, b"")  # TOUCH
                seq += 1
        finally:
            finish(end, seq)
        if loc is None:
            return None
        off, length = loc
        body_crc, head_crc, _kind, _seq, klen, vlen = _UNPACK_HEAD(mm, off)
        view = memoryview(mm)[off + _REC_HEAD: off + length]
        try:
            if _crc32(view, head_crc) != body_crc or bytes(view[:klen]) != k:
                raise RuntimeError("damaged record")
            return bytes(view[klen:])
        finally:
            view.release()

    def set_(key: Any, value: bytes) -> None:
        k = encode(key)
        end, seq = begin()
        try:
            start = end
            end = append(1, seq, end, k, value)
            seq += 1
            iput(k, start, end - start, len(k) + len(value))
        finally:
            finish(end, seq)

    def close() -> None:
        mv.release()
        hmm.close()
        mm.close()
        os.close(fd)
        os.close(lfd)

    return get, set_, close, idx


def _prepare_probe(path: str, capacity: int) -> None:
    with open(os.path.join(path, "probe.lock"), "wb") as f:
        f.truncate(mmap.PAGESIZE + ShmIndex.size_for(capacity))
    fd = os.open(os.path.join(path, "probe.log"), os.O_RDWR | os.O_CREAT, 0o600)
    os.posix_fallocate(fd, 0, _LOG_SIZE)
    os.close(fd)
    lfd = os.open(os.path.join(path, "probe.lock"), os.O_RDWR)
    hmm = mmap.mmap(lfd, mmap.PAGESIZE + ShmIndex.size_for(capacity))
    _HDR.pack_into(hmm, 8, 1, 0, 64, 1, 64)
    ShmIndex(memoryview(hmm)[mmap.PAGESIZE:], capacity, None, b"").init()
    hmm.close()
    os.close(lfd)


def model_order(path: str, capacity: int) -> list[bytes]:
    """Replay the probe's log into an OrderedDict LRU: the order one process doing every operation holds."""
    from collections import OrderedDict

    with open(os.path.join(path, "probe.lock"), "rb") as f:
        end = _HDR.unpack_from(f.read(64), 8)[2]
    with open(os.path.join(path, "probe.log"), "rb") as f:
        data = f.read(end)
    lru: OrderedDict[bytes, None] = OrderedDict()
    pos = 64
    while pos < end:
        _b, _h, kind, _seq, klen, vlen = _UNPACK_HEAD(data, pos)
        k = data[pos + _REC_HEAD : pos + _REC_HEAD + klen]
        pos += _REC_HEAD + klen + vlen
        if kind == 1:
            lru[k] = None
            lru.move_to_end(k)
            if len(lru) > capacity:
                lru.popitem(last=False)
        elif k in lru:
            lru.move_to_end(k)
    return list(lru)


def run_probe(path: str, n: int, ops: list, values: list, mean_value: float) -> dict[str, float]:
    """multiproc.run for the prototype: the same _play loop, then the checks.

    The shared index must hold exactly the order of an LRU replaying the log (every process's
    operations in the order they were serialized); lost = failed sets + last sets missing from the
    index but kept by that model (a last set the model evicted too was evicted by capacity, as exact
    LRU must: an early finisher's last sets can be, when one process runs well ahead of the others).
    """
    from bench.cache import multiproc
    from cache.encoding import encode_key

    _prepare_probe(path, CAPACITY)
    multiproc.OPENERS["probe"] = _probe_opener
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=multiproc._play, args=("probe", path, CAPACITY, mean_value, ops[i::n],
                                                        values, barrier, results, i)) for i in range(n)]
    for p in procs:
        p.start()
    shares = [results.get()[1] for _ in procs]
    for p in procs:
        p.join()
        assert p.exitcode == 0
    model = model_order(path, CAPACITY)
    get, _set, close, idx = _open_probe(path, CAPACITY)
    idx.check()
    offsets, mm = idx.keys_lru(), idx.log
    assert len(offsets) == len(model), "the shared index's length is not the log's"
    order = [bytes(mm[o + _REC_HEAD : o + _REC_HEAD + len(k)]) for o, k in zip(offsets, model, strict=True)]
    assert order == model, "the shared index's order is not the log's"
    kept = set(model)
    missing = sum(encode_key(k) in kept and get(k) is None for s in shares for k in s.last_sets)
    evicted = sum(encode_key(k) not in kept for s in shares for k in s.last_sets)
    close()
    span = max(s.end for s in shares) - min(s.start for s in shares)
    return {"ops_per_s": len(ops) / span, "cpu_us_per_op": sum(s.cpu for s in shares) / len(ops) * 1e6,
            "garbage": sum(s.garbage for s in shares), "lost": sum(s.failed_sets for s in shares) + missing,
            "evicted_last_sets": evicted}


def main() -> None:
    """Run both probes and print the figures."""
    from bench.cache import multiproc
    from bench.cache.workload import make_trace

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2,4,8")
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--diskcache", action="store_true", help="run diskcache's LRU in the rounds too")
    args = parser.parse_args()
    trace = make_trace()
    mean_value = statistics.fmean(len(v) for v in trace.values)
    counts = [int(x) for x in args.processes.split(",")]
    idx = [index_only(trace.ops, trace.values) for _ in range(args.rounds)]
    shm, od = statistics.median(r["shm_us"] for r in idx), statistics.median(r["od_us"] for r in idx)
    print(f"index only, 1 process, {len(trace.ops):,} trace ops: ShmIndex {shm:.2f} us/op, "
          f"RecencyOrder {od:.2f} us/op (x{shm / od:.1f})")
    ops = trace.ops[: args.ops]
    got: dict[tuple[int, str], list[dict[str, float]]] = {}
    for r in range(args.rounds):
        for n in counts:
            variants = ["main", "probe"] + (["diskcache"] if args.diskcache else [])
            for variant in variants[r % len(variants):] + variants[: r % len(variants)]:
                shutil.rmtree(WORK, ignore_errors=True)
                os.makedirs(WORK)
                if variant == "probe":
                    fig = run_probe(WORK, n, ops, trace.values, mean_value)
                else:
                    opener = "PersistentLRU" if variant == "main" else "diskcache LRU"
                    fig = multiproc.run(opener, WORK, n, ops, trace.values, CAPACITY, mean_value)
                got.setdefault((n, variant), []).append(fig)
                print(f"round {r + 1} {n} processes {variant:9s} {fig['ops_per_s']:9,.0f} ops/s "
                      f"{fig['cpu_us_per_op']:5.1f} us CPU/op lost {fig['lost']} garbage {fig['garbage']}"
                      + (f" (last sets evicted by capacity: {fig['evicted_last_sets']})"
                         if fig.get("evicted_last_sets") else ""),
                      flush=True)
    shutil.rmtree(WORK, ignore_errors=True)
    for n in counts:
        a, b = got[(n, "main")], got[(n, "probe")]
        pairs = sorted(y["ops_per_s"] / x["ops_per_s"] for x, y in zip(a, b, strict=True))
        print(f"{n} processes: main {statistics.median(f['ops_per_s'] for f in a):,.0f} ops/s "
              f"{statistics.median(f['cpu_us_per_op'] for f in a):.1f} us CPU/op; probe "
              f"{statistics.median(f['ops_per_s'] for f in b):,.0f} ops/s "
              f"{statistics.median(f['cpu_us_per_op'] for f in b):.1f} us CPU/op; probe/main "
              f"x{statistics.median(pairs):.2f} (pairs {', '.join(f'{p:.2f}' for p in pairs)})")
        if args.diskcache:
            dc = got[(n, "diskcache")]
            for name, mine in (("main", a), ("probe", b)):
                ratios = sorted(x["ops_per_s"] / y["ops_per_s"] for x, y in zip(mine, dc, strict=True))
                print(f"    {name} x diskcache LRU {statistics.median(ratios):.1f} "
                      f"(rounds {', '.join(f'{x:.1f}' for x in ratios)}); diskcache "
                      f"{statistics.median(f['ops_per_s'] for f in dc):,.0f} ops/s "
                      f"{statistics.median(f['cpu_us_per_op'] for f in dc):.1f} us CPU/op")


if __name__ == "__main__":
    main()
