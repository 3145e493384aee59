"""Issue 19 bench: --dedupe vs duperemove, --dirs vs rmlint -D, FastCDC packages' MB/s per core.

`.venv/bin/python -m bench.dedup.beyond` (as root: it loop-mounts a btrfs image). Writes the
"dedup-beyond" block inside the dedup section of bench/RESULTS.md (`make bench-dedup` keeps it).
--rounds N (or FANMILL_BENCH_ROUNDS=N) sets rounds (default 3); the median is reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench.dedup import cdc_speed, similar_bench
from bench.dedup.peers import REPO
from bench.results import RESULTS, machine_line

PY = os.path.join(REPO, ".venv", "bin", "python")
DEDUP = [PY, "-m", "dedup"]
MiB = 1024 * 1024


def sh(argv: list[str], **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """Run *argv*, fail loudly."""
    return subprocess.run(argv, check=True, capture_output=True, **kw)


def ensure_tools() -> None:
    """Install duperemove, rmlint and btrfs-progs from Debian when missing."""
    if all(shutil.which(t) for t in ("duperemove", "rmlint", "mkfs.btrfs")):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "duperemove",
                    "rmlint", "btrfs-progs"], check=True, env=env)


# ------------------------------------------------------------------ --dedupe vs duperemove


def build_extent_tree(root: str) -> tuple[dict[str, str], int]:
    """Write copies with write() (never reflinked); return sha256 per path and the ideal savings."""
    rng = random.Random(1919)
    digests, ideal = {}, 0
    os.makedirs(root)
    for i in range(24):
        size = int(256 * 1024 * (96 ** rng.random())) + rng.randrange(4096)  # 256 KiB .. 24 MiB
        data = b"".join(rng.randbytes(min(MiB, size - o)) for o in range(0, size, MiB))
        copies = 1 + rng.randrange(3) if i < 18 else 0
        digest = hashlib.sha256(data).hexdigest()
        for c in range(copies + 1):
            path = os.path.join(root, f"d{c}", f"f{i}.bin")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            digests[path] = digest
        ideal += copies * size
    os.sync()
    return digests, ideal


def shared_savings(mount: str, root: str) -> int:
    """Return bytes the tree no longer occupies thanks to sharing (btrfs filesystem du)."""
    sh(["btrfs", "filesystem", "sync", mount])
    out = sh(["btrfs", "filesystem", "du", "-s", "--raw", root]).stdout.decode().splitlines()[-1]
    total, exclusive, set_shared = (int(x) for x in out.split()[:3])
    return total - exclusive - set_shared


def check_tree(digests: dict[str, str]) -> bool:
    """Return True when every file still holds its bytes."""
    for path, digest in digests.items():
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != digest:
                return False
    return True


def bench_dedupe(rounds: int) -> str:
    """Time --dedupe --apply and duperemove -dr on the same loop-mounted btrfs tree."""
    work = tempfile.mkdtemp(prefix="fanmill-bench-btrfs-")
    image, mount = os.path.join(work, "img"), os.path.join(work, "mnt")
    os.mkdir(mount)
    with open(image, "wb") as f:
        f.truncate(1536 * MiB)
    sh(["mkfs.btrfs", "-q", "-f", image])
    device = sh(["losetup", "--find", "--show", image]).stdout.decode().strip()
    try:
        sh(["mount", device, mount])
        try:
            return _dedupe_rounds(mount, rounds)
        finally:
            sh(["umount", mount])
    finally:
        sh(["losetup", "-d", device])
        shutil.rmtree(work, ignore_errors=True)


def _dedupe_rounds(mount: str, rounds: int) -> str:
    tools = {"dedup --dedupe --apply": lambda root: DEDUP + ["--dedupe", "--apply", "-q",
                                                            "--format", "json", root],
             "dedup --dedupe --apply --verify": lambda root: DEDUP + [
                 "--dedupe", "--apply", "--verify", "-q", "--format", "json", root],
             "duperemove -dr": lambda root: ["duperemove", "-dr", root]}
    read: dict[str, list[int]] = {t: [] for t in tools}
    walls: dict[str, list[float]] = {t: [] for t in tools}
    saved: dict[str, list[int]] = {t: [] for t in tools}
    intact: dict[str, bool] = dict.fromkeys(tools, True)
    ideal = files = total = 0
    for r in range(rounds):
        order = list(tools) if r % 2 == 0 else list(reversed(tools))
        for name in order:
            root = os.path.join(mount, "tree")
            shutil.rmtree(root, ignore_errors=True)
            digests, ideal = build_extent_tree(root)
            files, total = len(digests), sum(os.path.getsize(p) for p in digests)
            before = shared_savings(mount, root)
            started = time.perf_counter()
            out = subprocess.run(tools[name](root), capture_output=True).stdout
            walls[name].append(time.perf_counter() - started)
            if name.startswith("dedup"):
                read[name].append(json.loads(out)["stats"]["bytes_read"])
            saved[name].append(shared_savings(mount, root) - before)
            intact[name] &= check_tree(digests)
    lines = [f"**--dedupe vs duperemove** — {files} files, {total / MiB:,.0f} MiB on a loop-mounted "
             f"btrfs image (copies written with write(), nothing shared before a run); ideal "
             f"savings {ideal / MiB:,.1f} MiB; tree rebuilt before every run, warm page cache; "
             f"{rounds} interleaved rounds; reclaimed = `btrfs filesystem du` total − (exclusive "
             "+ set shared).", "",
             "| tool | median wall s | reclaimed MiB | of ideal | contents intact | read in "
             "user space |", "|---|---:|---:|---:|---|---:|"]
    for name in tools:
        got = statistics.median(saved[name])
        mib = f"{statistics.median(read[name]) / MiB:,.1f} MiB" if read[name] else "–"
        lines.append(f"| {name} | {statistics.median(walls[name]):.2f} | {got / MiB:,.1f} | "
                     f"{got / ideal:.1%} | {'yes' if intact[name] else 'NO'} | {mib} |")
    lines += ["", NOTE_DEDUPE]
    return "\n".join(lines)


NOTE_DEDUPE = ("Where the time went before: dedup proved each group byte for byte in user space, "
               "then the kernel compared the same bytes again while sharing. Now a large group "
               "whose edges match goes to the kernel unread: FIDEDUPERANGE shares a range only "
               "after comparing it, so a target shared over its whole length (or already mapping "
               "the kept copy's blocks) is proven identical; whatever the kernel does not prove "
               "is compared in user space as before (dedup/kernelproof.py). --verify keeps the "
               "user-space compare of every group first. duperemove (multithreaded) hashes "
               "blocks and leaves the only comparison to the kernel.")


# ------------------------------------------------------------------ --dirs vs rmlint -D


def build_dir_tree(root: str, projects: int) -> None:
    """Projects with subtrees, then whole, nested, partial and renamed copies of some of them."""
    rng = random.Random(7)
    for p in range(projects):
        for s in range(3):
            for f in range(5):
                path = os.path.join(root, "src", f"p{p}", f"s{s}", f"f{f}.dat")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as out:
                    out.write(rng.randbytes(rng.randrange(1, 20_000)))
    src = os.path.join(root, "src")
    for p in range(0, projects, 3):  # whole copies
        shutil.copytree(os.path.join(src, f"p{p}"), os.path.join(root, "backup", f"p{p}"))
    for p in range(1, projects, 9):  # nested deeper
        shutil.copytree(os.path.join(src, f"p{p}"), os.path.join(root, "old", "x", "y", f"p{p}"))
    for p in range(2, projects, 6):  # partial: one file differs
        dst = os.path.join(root, "partial", f"p{p}")
        shutil.copytree(os.path.join(src, f"p{p}"), dst)
        with open(os.path.join(dst, "s1", "f2.dat"), "ab") as out:
            out.write(b"!")
    for p in range(4, projects, 12):  # renamed file: not a copy under our definition
        dst = os.path.join(root, "renamed", f"p{p}")
        shutil.copytree(os.path.join(src, f"p{p}"), dst)
        os.rename(os.path.join(dst, "s0", "f0.dat"), os.path.join(dst, "s0", "g0.dat"))


def _timed(argv: list[str], cwd: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, cwd=cwd)
    took = time.perf_counter() - started
    if done.returncode not in (0, 3):
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return took, done.stdout


def bench_dirs(rounds: int, projects: int = 600) -> str:
    """Run dedup, dedup --dirs and rmlint -D -j on one tree, interleaved; compare the groups."""
    work = tempfile.mkdtemp(prefix="fanmill-bench-dirs-")
    root = os.path.join(work, "t")
    rm_json = os.path.join(work, "rm.json")
    runs = {"plain": DEDUP + ["-q", "--format", "json", root],
            "dirs": DEDUP + ["-q", "--dirs", "--format", "json", root],
            # never "summary:/dev/null": rmlint replaces its output files, /dev/null included
            "rmlint": ["rmlint", "-D", "-j", "-T", "df,dd", "-o", f"json:{rm_json}", "-o",
                       f"summary:{os.path.join(work, 'rm.summary')}", root]}
    walls: dict[str, list[float]] = {name: [] for name in runs}
    ratios: list[float] = []
    try:
        build_dir_tree(root, projects)
        files = sum(len(f) for _, _, f in os.walk(root))
        for r in range(rounds):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            took: dict[str, float] = {}
            for name in order:
                took[name], out = _timed(runs[name], work)
                walls[name].append(took[name])
                if name == "dirs":
                    ours = {frozenset(d["paths"]) for d in json.loads(out)["dirs"]}
            ratios.append(took["dirs"] / took["plain"])
        theirs = _rmlint_dirs(rm_json)
        loose_json = os.path.join(work, "rm-loose.json")
        _timed(["rmlint", "-D", "-T", "df,dd", "-o", f"json:{loose_json}", "-o",
                f"summary:{os.path.join(work, 'rm-loose.summary')}", root], work)
        loose = _rmlint_dirs(loose_json)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    same = "identical" if ours == theirs else (
        f"{len(ours & theirs)} common, {len(ours - theirs)} only dedup, "
        f"{len(theirs - ours)} only rmlint")
    med = {name: statistics.median(w) for name, w in walls.items()}
    return "\n".join([
        f"**--dirs vs rmlint -D** — {files:,} files in {projects} projects with whole, nested "
        "(3 levels deeper), partial (one file differs) and renamed-file copies; warm; "
        f"{rounds} interleaved rounds (order reversed every other round), median.", "",
        "| run | median wall s | duplicate-directory groups |", "|---|---:|---:|",
        f"| dedup (no --dirs) | {med['plain']:.2f} | – |",
        f"| dedup --dirs | {med['dirs']:.2f} | {len(ours)} |",
        f"| rmlint -D -j (same layout required, as our definition) | {med['rmlint']:.2f} | "
        f"{len(theirs)} |",
        f"| rmlint -D (names ignored) | – | {len(loose)} |", "",
        f"Groups, dedup --dirs against rmlint -D -j, compared as sets of paths: {same}. "
        f"--dirs costs {statistics.median(ratios):.2f}x a plain run (median of the per-round "
        "ratios): the scan's own listings are kept and merged upward from the file digests, "
        "no second walk.",
    ])


def _rmlint_dirs(path: str) -> set[frozenset[str]]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    groups: dict[str, set[str]] = {}
    for entry in doc:
        if isinstance(entry, dict) and entry.get("type") == "duplicate_dir":
            groups.setdefault(entry["checksum"], set()).add(entry["path"])
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def write_subsection(markdown: str) -> None:
    """Put *markdown* in the dedup-beyond block, inside the dedup section (added before its end)."""
    begin, end = "<!-- BEGIN dedup-beyond -->", "<!-- END dedup-beyond -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}\n"
    text = RESULTS.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.replace("<!-- END dedup -->", block + "<!-- END dedup -->", 1)
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, RESULTS)


def main(argv: list[str] | None = None) -> int:
    """Run the comparisons and the chunking speeds; write the subsection."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.dedup.beyond", description=(
        "Issue 19: --dedupe vs duperemove on a loop-mounted btrfs image (root), --dirs vs rmlint "
        "-D, --similar vs a full-hash run, FastCDC MB/s per core; installs the peers with apt when "
        "missing and writes the dedup-beyond block of bench/RESULTS.md."))
    parser.add_argument("--rounds", type=int, default=int(os.environ.get(
        "FANMILL_BENCH_ROUNDS", "3")), help="rounds per comparison, medians reported (default 3, "
        "or FANMILL_BENCH_ROUNDS; --similar runs at least 9)")
    rounds = parser.parse_args(argv).rounds
    ensure_tools()
    version = sh(["duperemove", "--version"]).stdout.decode().strip()
    rm_version = re.search(rb"\d+\.\d+\.\d+", sh(["rmlint", "--version"]).stderr + sh(
        ["rmlint", "--version"]).stdout)
    parts = ["### beyond whole files — extents, directories, chunking (issue 19)", "",
             machine_line(), "",
             f"Command: `.venv/bin/python -m bench.dedup.beyond`. Versions: {version}; rmlint "
             f"{rm_version.group(0).decode() if rm_version else '?'}. The machine has 2 cores and "
             "was shared with other work during the run.", ""]
    for name, fn in (("dedupe", bench_dedupe), ("dirs", bench_dirs), ("similar", similar_bench.bench_similar),
                     ("cdc", cdc_speed.markdown)):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        # --similar's runs are short and its ratio moves with the machine's load: more rounds.
        parts += [fn(max(rounds, 9) if name == "similar" else rounds), ""]
    markdown = "\n".join(parts)
    write_subsection(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
