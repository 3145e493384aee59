"""dedup against jdupes on real trees of this machine: cold and warm page cache (issue 18).

`.venv/bin/python -m bench.dedup.realtrees` writes the dedup-real block of the dedup section of
bench/RESULTS.md (`make bench-dedup` keeps it). Trees: the pyenv versions directory (several
Python installations side by side) and /usr/lib; FANMILL_BENCH_TREES=a:b overrides them.
FANMILL_BENCH_ROUNDS=N sets the rounds (default 5 warm, 3 cold).

Cold rows drop the page cache (`echo 3 > /proc/sys/vm/drop_caches`, after `sync`) before every
run; when that is refused (not root) the table says so and the rows are not cold. Groups are
compared between dedup and jdupes as sets of (device, inode); the minimum bytes are every byte of
every file in a group (what any exact tool must read), from jdupes' groups.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

from bench.dedup.__main__ import WORK, Run, ensure_peers, file_ids, installed_python, run_tool
from bench.dedup.corpora import Corpus
from bench.dedup.peers import tools
from bench.results import RESULTS, machine_line, write_section

DEFAULT_TREES = ("/root/.pyenv/versions", "/usr/lib")


def drop_caches() -> bool:
    """Drop the page cache, dentries and inodes; return False when the kernel refuses."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def tree_stats(root: str) -> tuple[int, int]:
    """Return (regular files, bytes) under *root*, symlinks not followed; files every file's
    size under its (device, inode) for `_sizes_of` in the same walk."""
    files = total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            _index[(st.st_dev, st.st_ino)] = st.st_size
            if (st.st_mode & 0o170000) == 0o100000:
                files += 1
                total += st.st_size
    return files, total


def _sizes_of(ids: set[frozenset]) -> int:
    wanted = {i for g in ids for i in g}
    return sum(size for key, size in _index.items() if key in wanted)


_index: dict[tuple[int, int], int] = {}


def bench_tree(root: str, warm_rounds: int, cold_rounds: int, pair: list) -> tuple[str, bool]:
    """Run dedup and jdupes on *root*, warm then cold; return the markdown and whether cold held."""
    name = os.path.basename(root.rstrip("/")) or root
    outdir = os.path.join(WORK, "out", "real-" + root.strip("/").replace("/", "-"))
    os.makedirs(outdir, exist_ok=True)
    files, total = tree_stats(root)
    corpus = Corpus(name, root, [], files, total)
    for tool in pair:  # warm-up, and the groups check
        run_tool(tool, corpus, outdir)
    firsts = {t.name: file_ids(run_tool(t, corpus, outdir).groups, outdir) for t in pair}
    same = firsts["dedup"] == firsts["jdupes"]
    if same:
        check = "identical"
    else:
        a, b = firsts["dedup"], firsts["jdupes"]
        check = f"DIFFER: {len(a - b)} only in dedup, {len(b - a)} only in jdupes"
    minimum = _sizes_of(firsts["jdupes"])
    warm: dict[str, list[Run]] = {t.name: [] for t in pair}
    cold: dict[str, list[Run]] = {t.name: [] for t in pair}
    for r in range(warm_rounds):
        for tool in pair[r % 2:] + pair[: r % 2]:
            warm[tool.name].append(run_tool(tool, corpus, outdir))
    dropped = True
    for r in range(cold_rounds):
        for tool in pair[r % 2:] + pair[: r % 2]:
            dropped = drop_caches() and dropped
            cold[tool.name].append(run_tool(tool, corpus, outdir))
        print(f"  {root}: cold round {r + 1}/{cold_rounds}", file=sys.stderr, flush=True)
    lines = [
        f"**{root}** — {files:,} files, {total / 2**20:,.0f} MiB, {len(firsts['jdupes']):,} "
        f"duplicate groups; groups dedup vs jdupes (sets of (device, inode)): {check}; minimum "
        f"bytes to read {minimum / 2**20:,.1f} MiB",
        "",
        "| case | tool | median wall s | vs jdupes | peak RSS MiB | vs jdupes | read MiB (rchar) | read / minimum |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, runs, rounds in (("warm", warm, warm_rounds),
                                ("cold" if dropped else "NOT cold (drop_caches refused)", cold,
                                 cold_rounds)):
        if not rounds:
            continue
        jd_wall = statistics.median(x.wall for x in runs["jdupes"])
        jd_rss = statistics.median(x.maxrss_kib for x in runs["jdupes"])
        for tool in pair:
            rs = runs[tool.name]
            wall = statistics.median(x.wall for x in rs)
            rss = statistics.median(x.maxrss_kib for x in rs)
            rchar = statistics.median(x.rchar for x in rs)
            lines.append(
                f"| {label} ({rounds} runs) | {tool.name} | {wall:.3f} | {wall / jd_wall:.2f}x | "
                f"{rss / 1024:.1f} | {rss / jd_rss:.2f}x | {rchar / 2**20:,.1f} | "
                f"{rchar / minimum:.2f}x |")
    return "\n".join(lines), dropped


def parallel_read_probe(root: str) -> str:
    """Return a line timing `xargs -P 1 cat` against `-P 8` over every file of *root*, cold."""
    out = []
    for p in (1, 8):
        if not drop_caches():
            return "(parallel-read probe skipped: drop_caches refused)"
        cmd = f"find {root} -type f -print0 | xargs -0 -P {p} -n 100 cat > /dev/null"
        started = time.perf_counter()
        subprocess.run(["sh", "-c", cmd], check=False, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - started)
    return (f"Cold read of every file of {root} with `find | xargs -0 -P N -n 100 cat`: "
            f"P=1 {out[0]:.1f} s, P=8 {out[1]:.1f} s ({out[0] / out[1]:.1f}x): the disk rewards "
            "parallel reads.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dedup.realtrees",
        description="dedup against jdupes on real trees, warm and cold page cache; writes the "
        "dedup-real block of bench/RESULTS.md. Cold rounds drop the page cache (root).")
    parser.add_argument("--trees", default=os.environ.get("FANMILL_BENCH_TREES",
                                                          ":".join(DEFAULT_TREES)),
                        help="colon-separated trees (default: %(default)s)")
    parser.add_argument("--rounds", type=int,
                        default=int(os.environ.get("FANMILL_BENCH_ROUNDS", "5")),
                        help="warm rounds per tool (default: %(default)s)")
    parser.add_argument("--cold-rounds", type=int,
                        default=int(os.environ.get("FANMILL_BENCH_COLD_ROUNDS", "3")),
                        help="cold rounds per tool, each after a page-cache drop (default: "
                        "%(default)s; 0: none, and no parallel-read probe)")
    args = parser.parse_args(argv)
    trees = [t for t in args.trees.split(":") if t and os.path.isdir(t)]
    rounds, cold_rounds = args.rounds, args.cold_rounds
    ensure_peers()
    pair = [t for t in tools(installed_python()) if t.name in ("dedup", "jdupes")]
    parts = [
        "### real trees — cold and warm page cache (issue 18)",
        "",
        machine_line(),
        "",
        "Command: `.venv/bin/python -m bench.dedup.realtrees`. dedup -0 -q (default threads) "
        "against jdupes -r -q -0, interleaved; warm rounds after a warm-up, then cold rounds with "
        "the page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every run. "
        "Peak RSS from GNU time; bytes read = rchar (dedup's includes ~2 MiB of Python modules); "
        "dedup installed as a user installs it (bench/.venv-dedup: `pip install .`, not editable, "
        "modules compiled by pip). "
        "The machine has 2 cores.",
        "",
    ]
    for root in trees:
        print(f"running {root} ...", file=sys.stderr, flush=True)
        table, _dropped = bench_tree(root, rounds, cold_rounds, pair)
        parts += [table, ""]
    if trees and cold_rounds:
        parts.append(parallel_read_probe(trees[0]))
    block = "<!-- BEGIN dedup-real -->\n" + "\n".join(parts).rstrip() + "\n<!-- END dedup-real -->\n"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    found = re.search(r"<!-- BEGIN dedup -->\n(.*?)<!-- END dedup -->", text, re.S)
    body = found.group(1) if found else ""
    body = re.sub(r"<!-- BEGIN dedup-real -->.*?<!-- END dedup-real -->\n?", "", body, flags=re.S)
    if "<!-- BEGIN dedup-beyond -->" in body:
        body = body.replace("<!-- BEGIN dedup-beyond -->", block + "<!-- BEGIN dedup-beyond -->")
    else:
        body = body.rstrip() + "\n" + block
    write_section("dedup", body)
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
