"""fanmill's compiled parts: the cache's three and dedup's three (the rest of the metadata is in
pyproject.toml).

cache/_cfollow.c is the loop that applies the records other processes published (cache/follow.py),
cache/_cshared.c the per-operation protocol of a shared open (cache/sharedlog.py's begin, finish
and follow_published), cache/_ccompact.c compaction's copy loop (cache/compact.py; the bench
trace's compaction copy: the loop's own time 111 ms in Python, 34 ms compiled; the whole compaction's wall, bound by its writes, 182 -> 160 ms: bench/cache/stalls.py). optional=True: where they cannot be built (no C compiler), the install goes
on and the same code runs in Python, at a cost: `python -m bench.cache.crc_speed play --opens 8`
(the bench trace on 8 opens of one file in one process) under callgrind takes 110k instructions an
operation with neither, 59.5k with the loop and 54.0k with both (20,000 operations, minus --ops 0).

dedup/_cwalk.c lists a forked walk task's directories into the file table's columns
(dedup/subtrees.py `_Columns.list_dir`, without a per-file --include/--exclude call), and
dedup/_cheads.c and _cwholes.h are the warm head stage's open-and-read loops (dedup/cachedreads.py
`open_heads_python`, `read_wholes_python`), dedup/_ctable.c files a forked walk's sizes into buckets (dedup/table.py
`SizeBuckets.add`); without them the Python code runs. Warm /usr/lib, paired, the whole run's
wall against the Python code's: 0.85 with the listing, 0.93 more with the head loop
(`python -m bench.dedup.ab`).
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("cache._cfollow", ["cache/_cfollow.c"], optional=True),
    Extension("cache._cshared", ["cache/_cshared.c"], depends=["cache/_cshared.h", "cache/_ccrc.h"], optional=True),
    Extension("cache._ccompact", ["cache/_ccompact.c"], depends=["cache/_ccrc.h"], optional=True),
    Extension("dedup._cwalk", ["dedup/_cwalk.c"], depends=["dedup/_cdirents.h"], optional=True),
    Extension("dedup._cheads", ["dedup/_cheads.c"], depends=["dedup/_cwholes.h"], optional=True),
    Extension("dedup._ctable", ["dedup/_ctable.c"], optional=True),
])
