"""Where a worker's extra CPU per page goes: the throughput crawl with each process under cProfile
on the CPU clock (bench/crawler/workers_cprofile.py), own time grouped by module, per useful page.

The workers are started directly (`--worker-id`), as `crawl --workers 2` starts them, without the
parent (which only waits): on SQLite the fresh state file needs none of the parent's lock or reset,
on PostgreSQL the same command run twice is how machines share a crawl. cProfile inflates Python
code far more than C, so read the differences between the columns, not the absolute figures."""

from __future__ import annotations

import pstats
import re
import sys
import sysconfig
from collections import defaultdict
from pathlib import Path

from bench.crawler.workers_measure import out_files, read_records, reap, start, wait_quiet

STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def group_of(file: str, name: str, root: Path) -> str:
    """A readable group for one profiled function: the repository file, the installed package,
    the stdlib module, or for C functions the object type or module they belong to."""
    if file == "~":
        m = re.search(r"of '([\w.]+)' objects", name) or re.search(r"method ([\w.]+)", name)
        what = m.group(1) if m else name.strip("<>")
        head = what.split(".")[0]
        return f"C: {head}" if head in ("sqlite3", "asyncpg", "uvloop", "_asyncio") else f"C: {what}"
    path = Path(file)
    parts = path.parts
    if "site-packages" in parts:
        return "pkg: " + parts[parts.index("site-packages") + 1].split(".")[0]
    if file.startswith("<frozen importlib"):
        return "imports (importlib)"
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        pass
    try:
        rel = path.resolve().relative_to(STDLIB)
        return "stdlib: " + rel.parts[0].removesuffix(".py")
    except ValueError:
        return file


def own_time(profiles: list[Path], root: Path) -> dict[str, float]:
    """Own (tottime) seconds per group, summed over *profiles*."""
    groups: dict[str, float] = defaultdict(float)
    for path in profiles:
        for (file, _line, name), (_cc, _nc, tt, _ct, _callers) in pstats.Stats(str(path)).stats.items():
            groups[group_of(file, name, root)] += tt
    return groups


def profile_run(label: str, cmds: list[list[str]], base: Path, root: Path,
                expected: int) -> tuple[dict[str, float], int, str]:
    """Run *cmds* (one per process) together, each under cProfile; own time per group in µs per
    useful page, the pages, and a check."""
    for path in base.parent.glob(base.name + ".*"):
        path.unlink()
    wait_quiet()
    procs, profiles = [], []
    for i, cmd in enumerate(cmds):
        prof = base.with_suffix(f".{i}.prof")
        profiles.append(prof)
        assert cmd[1:3] == ["-m", "crawler"], cmd
        full = [cmd[0], "-m", "bench.crawler.workers_cprofile", str(prof), *cmd[3:]]
        procs.append(start(full, root, base.with_suffix(f".{i}.stdout"),
                           base.with_suffix(f".{i}.stderr")))
    codes = [reap(p, t, 1800)[2] for p, t in procs]
    records = read_records(out_files(base.with_suffix(".jsonl")))
    urls = [r["url"] for r in records]
    useful = sum(1 for r in records if r["status"] is not None and 200 <= r["status"] < 300)
    check = (f"ok: {len(set(urls)):,} URLs once" if not any(codes) and len(urls) == len(set(urls))
             == expected else f"exit {codes}, {len(urls)} records, {len(set(urls))} URLs")
    print(f"  profile {label}: {useful} pages, {check}", file=sys.stderr)
    groups = own_time(profiles, root)
    return {k: v / max(1, useful) * 1e6 for k, v in groups.items()}, useful, check


def table(columns: dict[str, dict[str, float]], top: int = 16) -> list[str]:
    """Markdown rows: the *top* groups by their largest difference from the first column."""
    names = list(columns)
    first = columns[names[0]]
    every = set().union(*columns.values())
    spread = {g: max(abs(columns[n].get(g, 0.0) - first.get(g, 0.0)) for n in names[1:])
              for g in every}
    ranked = sorted(every, key=lambda g: -max(spread[g], first.get(g, 0.0) * 0.2))[:top]
    rows = ["| own CPU time, µs per page (under cProfile) | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names)]
    for g in ranked:
        rows.append(f"| {g} | " + " | ".join(f"{columns[n].get(g, 0.0):,.0f}" for n in names)
                    + " |")
    rest = [sum(v for g, v in columns[n].items() if g not in ranked) for n in names]
    rows.append("| everything else | " + " | ".join(f"{x:,.0f}" for x in rest) + " |")
    rows.append("| **total** | " + " | ".join(f"**{sum(columns[n].values()):,.0f}**"
                                               for n in names) + " |")
    return rows
