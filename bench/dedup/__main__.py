"""`make bench-dedup`: build the corpora, run every tool warm and interleaved, write RESULTS.md.

Environment: FANMILL_BENCH_QUICK=1 shrinks the corpora (10,000 small files, large files at 1/32
size, 50,000 scale files) and the rounds, to check the harness in about a minute;
FANMILL_BENCH_ROUNDS=N sets rounds. FANMILL_BENCH_SCALE_FILES=N sets the scale corpus's size.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.dedup.corpora import (
    Corpus,
    build_large,
    build_mixed,
    build_scale,
    build_small,
    scale_root,
)
from bench.dedup.peers import REPO, Tool, tools
from bench.results import machine_line, write_section

WORK = os.path.join(REPO, "bench", ".work", "dedup")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
PEERS = ("jdupes", "rdfind", "fdupes", "rmlint", "time")
# Peak RSS is measured by GNU time, not by our own wait4: Linux keeps the RSS high-water mark a
# child inherits at fork across exec, so every tool forked from this ~60 MiB Python process would
# report at least that. time is small, so the tool it forks starts from a small image.
GNU_TIME = "/usr/bin/time"


@dataclass
class Run:
    """One measured run of one tool on one corpus."""

    wall: float
    maxrss_kib: int
    rchar: int
    exit_status: int
    groups: list[list[str]]


def ensure_peers() -> None:
    """Install the peer tools from Debian when any is missing."""
    if all(shutil.which(p) for p in PEERS if p != "time") and os.path.exists(GNU_TIME):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PEERS],
                   check=True, env=env)


INSTALLED = os.path.join(REPO, "bench", ".venv-dedup")


def installed_python() -> str:
    """Install fanmill from this checkout into bench/.venv-dedup as a user installs it (`pip
    install .`: not editable, modules compiled to bytecode by pip) and return that venv's Python.

    The project's .venv holds an editable install, whose import finder (loaded by site from a .pth
    file) costs every interpreter start ~10 ms: site 12 ms against 2 ms in a plain install, on
    this 2-core machine; an installed dedup never pays it, nor does jdupes. The runs also set
    PYTHONDONTWRITEBYTECODE, so without compiled modules every run would compile them first."""
    python = os.path.join(INSTALLED, "bin", "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if not os.path.exists(python):
        print(f"creating {INSTALLED} (fanmill installed, not editable) ...", file=sys.stderr,
              flush=True)
        subprocess.run([sys.executable, "-m", "venv", INSTALLED], check=True)
    else:  # this checkout's code, whatever was installed before
        subprocess.run([*pip, "--no-deps", "--force-reinstall", REPO], check=True)
    subprocess.run([*pip, REPO], check=True)  # the dependencies pyproject.toml names now
    return python


def run_tool(tool: Tool, corpus: Corpus, outdir: str) -> Run:
    """Run *tool* on *corpus* once; measure wall time, peak RSS (GNU time) and bytes read (rchar)."""
    out = os.path.join(outdir, f"{tool.name}.out")
    if os.path.exists(out):
        os.unlink(out)
    argv = tool.command(corpus.root, out)
    if corpus.run_as_nobody:
        argv = NOBODY + argv
    rss_file = out + ".rss"
    argv = [GNU_TIME, "-f", "%M", "-o", rss_file, *argv]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    stdout_path = out + ".stdout" if tool.writes_own_output else out
    with open(stdout_path, "wb") as stdout:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.DEVNULL, cwd=outdir,
                                env=env)
        # Wait without reaping: /proc/PID/io of the zombie still holds the whole process's counts.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        wall = time.perf_counter() - started
        rchar = _proc_io(proc.pid).get("rchar", -1)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    with open(out, "rb") as f:
        groups = tool.parse(f.read(), corpus.root)
    with open(rss_file, encoding="ascii") as f:
        maxrss_kib = int(f.read().split()[-1])
    del usage  # the launcher's own rusage, inflated by fork (see GNU_TIME)
    return Run(wall, maxrss_kib, rchar, proc.returncode, groups)


def _proc_io(pid: int) -> dict[str, int]:
    try:
        with open(f"/proc/{pid}/io", encoding="ascii") as f:
            return {k: int(v) for k, v in (line.split(": ") for line in f if ": " in line)}
    except OSError:
        return {}


def file_ids(groups: list[list[str]], base: str = "") -> set[frozenset]:
    """Return the groups as sets of (device, inode); an unresolvable path stays as its name."""
    out = set()
    for group in groups:
        ids = set()
        for path in group:
            try:
                st = os.lstat(os.path.join(base, path))
                ids.add((st.st_dev, st.st_ino))
            except OSError:
                ids.add(("missing", path))
        out.add(frozenset(ids))
    return out


def verdict(got: set[frozenset], truth: set[frozenset]) -> str:
    """Return "exact" or how the groups differ from the truth."""
    if got == truth:
        return "exact"
    missing, wrong = len(truth - got), len(got - truth)
    return f"{missing} of {len(truth)} groups missed or split, {wrong} wrong"


def minimum_bytes(truth: set[frozenset]) -> int:
    """Return the bytes any exact tool must read: every byte of every file that has a duplicate."""
    total = 0
    for group in truth:
        for dev_ino in group:
            total += _size_of[dev_ino]
    return total


_size_of: dict[tuple[int, int], int] = {}


def index_sizes(root: str) -> None:
    """Record the size of every regular file under *root* by (device, inode)."""
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            _size_of[(st.st_dev, st.st_ino)] = st.st_size


def bench_corpus(corpus: Corpus, rounds: int, candidates: list[Tool]) -> str:
    """Run every tool on *corpus*, interleaved; return the corpus's markdown table."""
    outdir = os.path.join(WORK, "out", corpus.name)
    os.makedirs(outdir, exist_ok=True)
    os.chmod(outdir, 0o777)  # tools run as nobody on `mixed` write their output here
    truth = file_ids(corpus.truth, corpus.root)
    index_sizes(corpus.root)
    minimum = minimum_bytes(truth)
    runs: dict[str, list[Run]] = {t.name: [] for t in candidates}
    correctness = {}
    for tool in candidates:  # warm-up: page cache, and the correctness check
        first = run_tool(tool, corpus, outdir)
        correctness[tool.name] = verdict(file_ids(first.groups, outdir), truth)
    for r in range(rounds):
        order = candidates[r % len(candidates):] + candidates[: r % len(candidates)]
        for tool in order:
            runs[tool.name].append(run_tool(tool, corpus, outdir))
        print(f"  {corpus.name}: round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    jd = statistics.median(x.wall for x in runs["jdupes"])
    lines = [
        f"**{corpus.name}** — {corpus.files:,} files, {corpus.total_bytes / 2**20:,.0f} MiB, "
        f"{len(truth)} true duplicate groups; minimum bytes to read {minimum / 2**20:,.1f} MiB; "
        f"{rounds} interleaved rounds after a warm-up"
        + (" (tools run as user nobody, so chmod 000 bites)" if corpus.run_as_nobody else ""),
        "",
        "| tool | median wall s | vs jdupes | peak RSS MiB | read MiB (rchar) | read / minimum | groups vs truth |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for tool in candidates:
        rs = runs[tool.name]
        wall = statistics.median(x.wall for x in rs)
        rss = statistics.median(x.maxrss_kib for x in rs) / 1024
        rchar = statistics.median(x.rchar for x in rs)
        ratio = f"{rchar / minimum:.2f}x" if minimum > 2**20 else "–"
        lines.append(f"| {tool.name} | {wall:.3f} | {wall / jd:.2f}x | {rss:.1f} | "
                     f"{rchar / 2**20:,.1f} | {ratio} | {correctness[tool.name]} |")
    return "\n".join(lines)


CORPORA = ("small", "large", "mixed", "scale")


def main(argv: list[str] | None = None) -> int:
    """Build the corpora, run the comparison and write the dedup section of bench/RESULTS.md."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench.dedup",
        description="dedup against its peers on generated corpora (warm); writes the dedup "
        "section of bench/RESULTS.md. Corpora not run keep their previous tables, marked so.")
    parser.add_argument("--corpora", default=",".join(CORPORA),
                        help="comma-separated corpora to run (default: %(default)s)")
    args = parser.parse_args(argv)
    chosen = [c for c in args.corpora.split(",") if c]
    unknown = set(chosen) - set(CORPORA)
    if unknown:
        parser.error(f"unknown corpora: {', '.join(sorted(unknown))}")
    quick = os.environ.get("FANMILL_BENCH_QUICK") == "1"
    rounds = int(os.environ.get("FANMILL_BENCH_ROUNDS", "2" if quick else "5"))
    ensure_peers()
    python = installed_python()
    os.makedirs(WORK, exist_ok=True)
    for path in (os.path.join(REPO, "bench"), os.path.join(REPO, "bench", ".work"), WORK):
        os.chmod(path, os.stat(path).st_mode | 0o755)  # nobody must reach the mixed corpus
    print("building corpora ...", file=sys.stderr, flush=True)
    builders = {"small": lambda: build_small(WORK, files=10_000 if quick else 100_000),
                "large": lambda: build_large(WORK, scale=1 / 32 if quick else 1.0),
                "mixed": lambda: build_mixed(WORK)}
    old = _previous_blocks()
    corpora = [builders[name]() if name in chosen else name for name in builders]
    candidates = tools(python)
    versions = _versions()
    sections = [
        "## dedup — duplicate-file finders",
        "",
        machine_line(),
        "",
        "Command: `make bench-dedup`" + (" with FANMILL_BENCH_QUICK=1 (shrunk corpora)" if quick else "")
        + f". Versions: {versions}. Same policy for all: recursive, symlinks not followed, empty "
        "files ignored, report only (jdupes -r -q -0; rdfind -ignoreempty true -dryrun true; "
        "fdupes -r -n -q; rmlint -T df -o json; dedup -0 -q, default threads). Warm page cache; "
        "wall time from spawn to exit; peak RSS from GNU time (%M); bytes read = rchar of /proc/PID/io "
        "(includes each tool's own start-up reads: about 2 MiB of modules for Python). dedup is "
        "installed as a user installs it (bench/.venv-dedup: `pip install .`, not editable, "
        "modules compiled by pip). Groups "
        "are compared with the truth as sets of (device, inode).",
        "",
    ]
    for corpus in corpora:
        if isinstance(corpus, str):  # not run: its table from the previous run, said so
            sections.append(old.get(corpus, f"**{corpus}** — not run"))
            sections.append("")
            continue
        print(f"running {corpus.name} ...", file=sys.stderr, flush=True)
        sections.append(bench_corpus(corpus, rounds if corpus.name != "mixed" else max(2, rounds // 2),
                                     candidates))
        sections.append("")
    sections.append(bench_scale(quick, python) if "scale" in chosen else
                    old.get("scale", "**scale** — not run"))
    sections.append("")
    markdown = "\n".join(sections) + _kept_subsection()
    write_section("dedup", markdown)
    print(markdown)
    return 0


def _previous_blocks() -> dict[str, str]:
    """Return each corpus's block of the dedup section as it stands, marked as kept from an
    earlier run (for corpora this run leaves out)."""
    from bench.results import RESULTS

    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    found = re.search(r"<!-- BEGIN dedup -->\n(.*?)<!-- END dedup -->", text, re.S)
    body = re.sub(r"<!-- BEGIN dedup-.*", "", found.group(1), flags=re.S) if found else ""
    dated = re.search(r"^(\d{4}-\d\d-\d\d) · ", body, re.M)
    mark = f" *(kept from the run of {dated.group(1) if dated else 'an earlier date'})*"
    blocks: dict[str, str] = {}
    for name in CORPORA:
        start = r"Scale run: .*?\*\*scale\*\*" if name == "scale" else rf"\*\*{name}\*\*"
        block = re.search(rf"({start} — .*?)(?=\n\n(?:\*\*|Scale run)|\Z)", body, re.S)
        if block:
            text_block = block.group(1).rstrip()
            if "*(kept from the run of" not in text_block:
                first, _, rest = text_block.partition("\n")
                text_block = first + mark + "\n" + rest
            blocks[name] = text_block
    return blocks


def _kept_subsection() -> str:
    """Return the dedup-real and dedup-beyond blocks (written by bench.dedup.realtrees and
    bench.dedup.beyond, which `make bench-dedup` runs after this) so this rewrite keeps them."""
    from bench.results import RESULTS

    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    kept = ""
    for name in ("dedup-real", "dedup-beyond"):
        found = re.search(rf"<!-- BEGIN {name} -->.*?<!-- END {name} -->\n?", text, re.S)
        if found:
            kept += "\n" + found.group(0)
    return kept


def bench_scale(quick: bool, python: str) -> str:
    """Build the scale corpus (a million files by default), run dedup and jdupes, remove it."""
    files = int(os.environ.get("FANMILL_BENCH_SCALE_FILES", "50000" if quick else "1000000"))
    root = scale_root(WORK)
    print(f"building the scale corpus ({files:,} files) in {root} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    corpus = build_scale(root, files=files)
    built = time.perf_counter() - started
    print(f"running scale (built in {built:.0f} s) ...", file=sys.stderr, flush=True)
    pair = [t for t in tools(python) if t.name in ("dedup", "jdupes")]
    try:
        table = bench_corpus(corpus, 2, pair)
    finally:
        if root.startswith("/dev/shm/"):  # give the memory back (it is rebuilt next run)
            shutil.rmtree(root, ignore_errors=True)
            os.unlink(root + ".json")
    where = "tmpfs (/dev/shm), so every run is warm" if root.startswith("/dev/shm/") else root
    return (f"Scale run: {files:,} files of 1 B–4 KiB (sizes log-distributed, ~30% copies, ~10% "
            f"same-size one-byte traps) in 1,000 directories, on {where}; only dedup and jdupes. "
            f"Corpus built in {built:.0f} s.\n\n" + table)


def _versions() -> str:
    out = []
    for name, flag in (("jdupes", "--version"), ("rdfind", "--version"), ("fdupes", "--version"),
                       ("rmlint", "--version")):
        try:
            proc = subprocess.run([name, flag], capture_output=True, timeout=10)
            text = (proc.stdout or proc.stderr).decode(errors="replace")
        except (OSError, subprocess.TimeoutExpired):
            text = ""
        found = re.search(r"\d+\.\d+(\.\d+)?", text)
        out.append(f"{name} {found.group(0) if found else '?'}")
    return "; ".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
